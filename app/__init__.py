"""The ASF Gradio app: `app.inference.Reconstructor` (numpy in, numpy out), `app.figures` (plotly),
`app.ui` (layout and wiring only). Launch with `python app.py`."""
