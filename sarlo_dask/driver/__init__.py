"""Running units on a Dask cluster: the driver loop (loop: imports nothing of the package),
typed outcomes and failure records, the commit protocol (integrity), retries, per-worker
state, the cluster, and leases on work."""
