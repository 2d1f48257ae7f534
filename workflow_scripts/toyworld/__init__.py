"""The miniature world: coloured-shape scenes, every dataset format of the study, and toy base models."""
