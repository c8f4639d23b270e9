"""The release: shards split by pass and published as one generation (publish), the pass
splits (splits), and the check of a published release against its manifest (verify)."""
