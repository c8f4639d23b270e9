"""The SAR geometry: the SICD sensor model, geolocation, resampling, heights (constant, DEM),
terrain and the tile grid. Pure functions, except the DEM reader (dem) and the SICD reader
(sicd), which open files through the store."""
