"""What a model version is: its layout on disk, its manifest and checksums, loading it for inference,
reward scoring, the registry of versions and the announcement that makes replicas serve one.

Imported by both `trainer/` (which makes versions) and `api/` (which serves them); it imports
neither, nor any training library (`datasets`, `trl`): tests/test_import_boundary.py checks it.
"""
