"""The stream-processing stage: Faust agents that validate, store, aggregate and route."""
