"""The adapter's way to Kubeflow Pipelines: the only code that uses the KFP SDK.

- `KfConnect` (client.py): one method a KFP operation, returning plain dicts, by resource
  in pipelines.py and runs.py;
- `KfpClient` (interface.py): those methods as the API and run tracking rely on them;
- transport.py: the SDK client, credentials (auth.py), time-outs, metrics, read retries;
- errors.py: KFP's failures as the adapter's typed errors, mapped once;
- flatten.py: KFP's JSON as plain dicts (pure); filters.py, uploads.py: what calls send.
"""

from kfadapter.kfp.client import KfConnect
from kfadapter.kfp.interface import KfpClient, NewRun, PageRequest
from kfadapter.kfp.runs import RUN_IDS_PER_CALL
from kfadapter.kfp.transport import PAGE_SIZE

__all__ = ["PAGE_SIZE", "RUN_IDS_PER_CALL", "KfConnect", "KfpClient", "NewRun", "PageRequest"]
