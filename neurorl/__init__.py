"""NeuroRL: spiking deep reinforcement learning with resilient replay and energy accounting."""

__version__ = "0.1.0"
