"""Selection of the learning rate, the paper's tables and figures. Reads result files only."""
