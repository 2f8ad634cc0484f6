"""The studio's look: Gradio's Soft theme in the accent and the font stack of the server pages
(assets/pages.css). Only plain font-family names: nothing is fetched from the internet, and no
bundled web font stands in for the system's (Gradio's default Montserrat drew "Ɛxact", "Ŋot")."""

from __future__ import annotations

import gradio as gr

FONT = ("ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Noto Sans",
        "Liberation Sans", "Arial", "sans-serif")
FONT_MONO = ("ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "monospace")
# --accent of assets/pages.css (#6d4aff) at 500, with lighter and darker steps around it.
ACCENT = gr.themes.Color(c50="#f3f0ff", c100="#e9e3ff", c200="#d5cbff", c300="#b8a6ff", c400="#9878ff",
                         c500="#6d4aff", c600="#5b35f0", c700="#4c28d4", c800="#3f22ab", c900="#351f88",
                         c950="#1f1152", name="studio")


def studio_theme() -> gr.themes.Base:
    return gr.themes.Soft(primary_hue=ACCENT, font=list(FONT), font_mono=list(FONT_MONO)).set(
        link_text_color="*primary_500", link_text_color_dark="*primary_300",
        # --bg of assets/pages.css, light and dark
        body_background_fill="#f6f5fb", body_background_fill_dark="#0f1017",
    )
