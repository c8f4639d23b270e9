"""Files the build reads and writes: NITF and scene readers, the scene catalogue, WebDataset
shard tars, the GeoParquet index, release generations and the sample writers."""
