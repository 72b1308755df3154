"""Live inputs: what a watch (and a live agent) reads as it happens, on its own thread.

Each turns a live source into ``EventBatch``es with the format readers of
``sources/`` and delivers them with its position, so a restart resumes where the last
commit was (``live``: the contract, files and the backoff). One module per input:
``follow`` (files and folders as they grow, rotate and are truncated), ``kmsg_live``
(``/dev/kmsg`` or the journal), ``scrape`` (a dcgm-exporter endpoint), ``nvml`` (the
GPUs through NVML), ``kube_watch`` (Kubernetes Events through a watch).

Layering: inputs import ``sources`` (the formats), never the reverse.
"""
