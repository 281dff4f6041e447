"""Export: one front member as a deployable, physically smaller Keras model, checked against its search."""
