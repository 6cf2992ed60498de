"""Precision marketing: who gets which coupon (planning, audience selection) and what it earned
(measurement). The API, the CLI and the demo call these functions; campaign lifecycle and grants are
commerce services, the effect models live in `models.uplift` and are fitted in `training.uplift`."""
