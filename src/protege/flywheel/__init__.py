"""The flywheel: curate → analyze → select → train → evaluate → gate over what has been logged, again and again."""

from protege.flywheel.loop import FlywheelOptions, review_routes, run_pass, watch

__all__ = ["FlywheelOptions", "review_routes", "run_pass", "watch"]
