"""Per-task Python environments of the embedded KFP server, and the cache that keeps them.

On a cluster every task runs in a container of its own, and the pip commands that kfp puts in
front of a lightweight component (``pip install kfp==X --no-deps``, ``packages_to_install``,
``pip_index_urls``) install into that container. Here each task gets a virtual environment
that holds exactly that: the packages its component's pip commands name, in their order and
with their flags, after the packages that ``--image-packages`` maps to its image. The pip
commands are taken out of the component's command; the rest (kfp's program) runs in the
environment. Environments use the server's Python (its version is part of the key).

- ``commands``: reading a component's command (``parse_task_command``, ``InstallStep``).
- ``installers``: uv and pip, and the wheel of the server's own kfp.
- ``cache``: ``TaskEnvironments``: content keys, locks, build and publish, eviction.
- ``options``: the command-line values (``parse_size``, ``parse_image_packages``).
"""

from kfadapter.localkfp.environments.cache import (
    DEFAULT_INSTALL_TIMEOUT,
    MARKER,
    PreparedCommand,
    TaskEnvironments,
)
from kfadapter.localkfp.environments.commands import (
    EnvironmentBuildError,
    InstallStep,
    TaskCommand,
    parse_task_command,
)
from kfadapter.localkfp.environments.installers import INSTALLER_VARIABLE, server_kfp_wheel
from kfadapter.localkfp.environments.options import (
    DEFAULT_CACHE_SIZE,
    parse_image_packages,
    parse_size,
)

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_INSTALL_TIMEOUT",
    "INSTALLER_VARIABLE",
    "MARKER",
    "EnvironmentBuildError",
    "InstallStep",
    "PreparedCommand",
    "TaskCommand",
    "TaskEnvironments",
    "parse_image_packages",
    "parse_size",
    "parse_task_command",
    "server_kfp_wheel",
]
