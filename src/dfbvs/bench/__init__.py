"""Benchmarks: seeded protocols of simulated episodes, methods run on identical episodes, a resumable
runner (local worker processes or a Ray cluster), and reports."""
