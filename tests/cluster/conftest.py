from clusterkit import cluster  # noqa: F401  (fixture)
