"""Pipeline packages: reading them (parsing), KFP's checks and fitting (check, names), v1 volume passing. Pure, no I/O."""
