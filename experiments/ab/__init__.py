"""Online A/B testing: assignment (pure, used by serving), analysis, power and simulation."""
