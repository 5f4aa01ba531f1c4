"""Tools beside the library and the app: each a script with its own command line, run from the
repository root. None is imported by asf_core or app.

    python -m tools.loadtest ...            load test of the app's /reconstruct endpoint
    python -m tools.app_bench ...           the app's speed per architecture (docs/app_speed.json)
    python tools/make_samples.py ...        the app's bundled sample images (app/samples/)
    python tools/run_curves.py ...          validation curves of training runs, as one JSON
    python tools/velocity_reference.py      the shipped checkpoints' velocities (tests/test_velocities.py)
    python tools/results_table.py ...       the README's results table from evaluation JSONs
"""
