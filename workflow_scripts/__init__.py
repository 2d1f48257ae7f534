"""Stage scripts of the LayerNorm-tuning study; each stage module has a ``main()`` that a rule calls."""
