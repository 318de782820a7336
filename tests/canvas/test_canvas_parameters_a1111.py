from hypothesis import given
from hypothesis import strategies as st

from canvas.parameters import format_parameters, parse_parameters  # the one A1111 formatter, shared with the backend


def test_a1111_layout():
    text = format_parameters({
        "prompt": "a red barn", "negative_prompt": "blurry", "Steps": 20, "Sampler": "DPM++ 2M",
        "CFG scale": "7", "Seed": 1, "Size": "512x512", "Model": "sd15", "Denoising strength": "0.75",
    })
    assert text == (
        "a red barn\nNegative prompt: blurry\n"
        "Steps: 20, Sampler: DPM++ 2M, CFG scale: 7, Seed: 1, Size: 512x512, Model: sd15, Denoising strength: 0.75"
    )


text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), max_size=40)


@given(text, text, st.integers(0, 2**32), st.text("abc ,:\"", min_size=1, max_size=10))
def test_round_trip(prompt, negative, seed, model):
    params = {"prompt": prompt, "negative_prompt": negative, "Steps": "20", "Seed": str(seed), "Model": model}
    back = parse_parameters(format_parameters(params))
    assert back["Seed"] == str(seed) and back["Model"] == model and back["Steps"] == "20"
    if "\n" not in prompt and not prompt.startswith("Negative prompt:"):
        assert back["prompt"] == prompt
    if negative and "\n" not in negative:
        assert back.get("negative_prompt", "") == negative
