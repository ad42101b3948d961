"""`python -m kfadapter` is the same as the `kfadapter` command."""

from kfadapter.cli import main

raise SystemExit(main())
