"""Diagonal linear networks (``family = "diagonal_linear"``): DMFT by Monte Carlo, oracles, figures."""
