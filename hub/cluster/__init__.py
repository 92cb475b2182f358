"""Running one hub as several replicas: the key they share (`keys`) and its config (`config`)."""
