"""A sweep's state on disk: the jobs it plans and each job's status, for its table and for a resume."""
