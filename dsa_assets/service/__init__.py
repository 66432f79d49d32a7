"""The service on top of everything: ``dsa110-stream`` (its options generated from the
settings), and the worker that runs the Dagster daemon and webserver or processes once."""
