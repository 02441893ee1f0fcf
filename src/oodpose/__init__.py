"""oodpose: the Horse-10 robustness study as a library and a Snakemake workflow."""
