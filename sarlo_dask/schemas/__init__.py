"""JSON Schemas of what a release holds (meta.schema.json: a sample's meta.json)."""
