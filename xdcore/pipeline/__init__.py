"""The start and stop pipelines: a stage table (data) and the runner that executes it."""
