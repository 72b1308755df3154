"""Sources: the format readers that turn what GPU nodes emit into ``EventBatch``es.

``read_paths`` reads files, folders, gzip and stdin; every format is recognised from
content. One module per format: ``kmsg`` (kernel log), ``dcgm`` (dcgm-exporter),
``smi`` (nvidia-smi), ``k8s`` (Kubernetes events), ``nccl`` (NCCL / PyTorch),
``jsonl`` (fleetwatch's own events); ``stream`` finds their records in mixed logs.
What reads them live (following files, ``/dev/kmsg``, scrapes, NVML, the Kubernetes
watch) is in ``inputs/``, a layer above.
"""

from fleetwatch.sources.context import ReadOptions, ReadStats
from fleetwatch.sources.files import InputError, read_paths

__all__ = ["InputError", "ReadOptions", "ReadStats", "read_paths"]
