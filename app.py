"""Launch the ASF Gradio app: `python app.py` serves http://127.0.0.1:7860.

GRADIO_SERVER_NAME / GRADIO_SERVER_PORT choose another address (0.0.0.0 to listen on every
interface); ASF_PRETRAINED_DIR another checkpoint folder (default ./pretrained). Analytics are off
and nothing is downloaded: the app runs offline on CPU.
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    from app.ui import LAUNCH, build_ui

    demo = build_ui()
    demo.queue(default_concurrency_limit=1)  # 2 CPU cores: one heavy event at a time per listener
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        **LAUNCH,
    )


if __name__ == "__main__":
    main()
