"""The work of a retrain job: the champion's rows plus the labelled prod rows, trained through
the dev phase (lifecycle/retrain.py), holding a heavy slot like a training request."""

from __future__ import annotations

from flask import current_app

from trainer.lifecycle import retrain


def retrain_work(plan: retrain.Plan):
    """A job that retrains `plan.model`; its answer is the dev answer."""
    app = current_app._get_current_object()

    def work(context):
        def on_round(done: int, planned: int) -> bool:
            context.progress(stage="training", rounds_done=done, rounds_max=planned)
            return False

        with app.app_context():
            context.progress(stage="waiting for a slot")
            with app.extensions["admission"].hold(context.check):
                context.progress(stage="reading rows")
                state = app.extensions["sluice"]
                answer = retrain.run(
                    plan,
                    state.monitor,
                    on_round,
                    context.check,
                    config=state.training,
                    gate=state.gate,
                    cache=state.cache,
                    state_dir=state.state_dir,
                    tags=dict(state.tags),
                    rows_max_mb=app.config["TRAINING_ROWS_MAX_MB"],
                )
            return 200, answer

    return work
