from clusterkit import cluster, proc_nodes  # noqa: F401  (fixtures)
