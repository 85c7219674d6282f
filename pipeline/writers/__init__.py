"""Writers: chip shards, Parquet tables and run summaries, rerun-safe."""
