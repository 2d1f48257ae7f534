"""The fetch stage: every model and data set into local folders before any job runs (jobs never reach a network)."""
