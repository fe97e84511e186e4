"""welfare-gateway's runtime: config, event model, ingest, pipeline, storage and CLI."""
