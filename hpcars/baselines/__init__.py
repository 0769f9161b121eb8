"""Gradient-based baselines that hpcars' studies compare ARS with (``grpo``)."""
