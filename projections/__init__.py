"""Read models built from the customer history; each rebuildable from zero and tracked."""
