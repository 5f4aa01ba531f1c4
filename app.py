"""Launch the ASF Gradio app: `python app.py` serves http://127.0.0.1:7860.

GRADIO_SERVER_NAME / GRADIO_SERVER_PORT choose another address (0.0.0.0 to listen on every
interface; Hugging Face Spaces set both); ASF_PRETRAINED_DIR another checkpoint folder (default
./pretrained). Analytics are off. Nothing is downloaded unless ASF_HUB_REPO names a Hub repository
("owner/asf-weights", one sub-folder per checkpoint) to fetch the checkpoints pretrained/ lacks;
without it the app runs offline on CPU. The same file is a Space's `app_file` (see app/space.py).
"""

import os
import tempfile

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# examples are cached lazily (app.ui); a fresh folder per start, so a cache never outlives the code
os.environ.setdefault("GRADIO_EXAMPLES_CACHE", tempfile.mkdtemp(prefix="asf_examples_"))
if not os.environ.get("ASF_HUB_REPO"):  # offline unless asked to fetch weights (set before any HF import)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    from app.ui import LAUNCH, QUEUE, build_ui

    demo = build_ui()
    demo.queue(**QUEUE)
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        **LAUNCH,
    )


if __name__ == "__main__":
    main()
