"""Networks, parameter initialisation and the agent TrainState."""
