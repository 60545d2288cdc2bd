"""spine-docs: a MongoDB metadata catalog for the HDF5 files SPINE writes."""

__version__ = "0.1.0"
