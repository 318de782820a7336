"""Textual-inversion embeddings, loaded through diffusers' ``load_textual_inversion``.

Contract (used by :func:`backend.steering.job.prepare`, once per job):

    apply(ctx, model, prompt, negative_prompt, embeddings, allow_pickle=False) -> list[str]  # notes

An embedding is used by writing its token, the file's name without its suffix (in lower case: the
text encoder's tokenizer reads prompts in lower case), in the prompt or the negative prompt, as in
A1111. It comes from the request's ``embeddings`` (paths, or names in
:func:`backend.steering.steering_dir` ``("embeddings")``) or, for a word of the prompts that is the
name of a file in that folder, from the folder itself.

* Layouts: A1111 (``emb_params`` in a ``.safetensors``; ``string_to_param`` in a pickle), diffusers'
  one tensor named by its token, and SDXL's ``clip_l`` + ``clip_g`` (loaded into ``text_encoder`` /
  ``tokenizer`` and ``text_encoder_2`` / ``tokenizer_2``). Pickles are refused unless the request
  allows them, then read with ``weights_only=True``.
* :func:`check` reads headers only (no torch): missing, not an embedding, made for another text
  encoder (its width: 768 SD 1.x, 1024 SD 2.x; ``clip_l``/``clip_g`` SDXL), or explicitly given but
  its token is in neither prompt: one sentence naming the file, before the job.
* A model loads each token once (``model.embedding_state``: token -> the file's path, time and size;
  ``model.embedding_loads`` counts the files read); a prompt without the token gives exactly what the
  model gives without the embedding.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..checkpoints import PICKLE_SUFFIXES, read_header
from ..errors import InvalidRequest, ModelError

SUFFIXES = (".safetensors",) + PICKLE_SUFFIXES
_FAMILY_BY_WIDTH = {768: "SD 1.x", 1024: "SD 2.x"}
SDXL_KEYS = ("clip_l", "clip_g")
_COMPONENT = {"clip_l": "text_encoder", "clip_g": "text_encoder_2", "": "text_encoder"}


@dataclass(frozen=True)
class EmbeddingFile:
    path: Path
    layout: str  # "a1111", "diffusers" or "sdxl"
    widths: tuple  # ((part, width), ...): part "" for one text encoder, "clip_l"/"clip_g" for SDXL
    vectors: int

    @property
    def token(self) -> str:
        return token_of(self.path)

    @property
    def family(self) -> str:
        if self.layout == "sdxl":
            return "SDXL"
        width = self.widths[0][1]
        return _FAMILY_BY_WIDTH.get(width, f"a text encoder {width} wide")


def token_of(path: Path) -> str:
    """The word that uses an embedding in a prompt: its file's name without the suffix, in lower case."""
    return path.stem.lower()


def mentioned(text: str, token: str) -> bool:
    """Whether ``token`` is written in ``text`` as a word of its own (in any case)."""
    return re.search(rf"(?<![\w-]){re.escape(token)}(?![\w-])", text, re.IGNORECASE) is not None


def find(name: str) -> Path:
    from .. import paths
    from . import steering_dir

    folder = steering_dir("embeddings")
    path = paths.find_model_file(name, (folder,), SUFFIXES)
    if not path.is_file():
        raise ModelError(f"The embedding {name!r} was not found: give the path of its .safetensors file, or put it "
                         f"into {folder}.")
    return path


def wanted(prompt: str, negative_prompt: str, embeddings, *, allow_pickle: bool = False) -> tuple[list, list]:
    """(the embedding files this job uses as ``(path, given)``, notes): each given one (its token must be in a
    prompt), and each file of the embeddings folder whose token is a word of the prompts (``given`` False)."""
    from . import steering_dir

    files, notes, tokens = [], [], set()
    for name in embeddings:
        path = find(name)
        token = token_of(path)
        if not (mentioned(prompt, token) or mentioned(negative_prompt, token)):
            raise InvalidRequest(f"The embedding {path.name} is not used by the prompts: write its token {token} in "
                                 "the prompt or the negative prompt, or remove the embedding.")
        if token not in tokens:
            files.append((path, True))
            tokens.add(token)
    folder = steering_dir("embeddings")
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            token = token_of(path)
            if path.suffix.lower() not in SUFFIXES or not path.is_file() or token in tokens:
                continue
            if not (mentioned(prompt, token) or mentioned(negative_prompt, token)):
                continue
            if path.suffix.lower() != ".safetensors" and not allow_pickle:
                notes.append(f"The word {token} is the name of the embedding {path.name}, a pickle file, so it was "
                             "not used: use a .safetensors version, or allow pickle files (--allow-pickle).")
                continue
            files.append((path, False))
            tokens.add(token)
    return files, notes


def _usable(path: Path, given: bool, model_name: str, text_widths, *, allow_pickle: bool, notes: list):
    """The file's :class:`EmbeddingFile` if it fits the model; for a file found by a word of the prompts that
    does not (made for another model, damaged), None and a note: only a given one is an error."""
    try:
        emb = inspect(path, tensor_table(path, allow_pickle=allow_pickle))
        if text_widths is not None:
            check_fits(emb, model_name, text_widths)
        return emb
    except ModelError as exc:
        if given:
            raise
        notes.append(f"The word {token_of(path)} is the name of an embedding in {path.parent.name}/ that was not "
                     f"used: {exc}")
        return None


def _pickle_contents(path: Path) -> dict:
    from ..checkpoints import _torch_load

    data = _torch_load(path)  # weights_only=True: tensors and plain containers only
    if isinstance(data, dict) and isinstance(data.get("string_to_param"), dict):  # A1111's .pt
        data = {"emb_params": data["string_to_param"].get("*")}
    if not isinstance(data, dict):
        raise ModelError(f"The embedding {path.name} does not hold a table of tensors: choose a textual-inversion "
                         "embedding file.")
    import torch

    return {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}


def tensor_table(path: Path, *, allow_pickle: bool = False) -> dict:
    """name -> shape of the file's tensors (a pickle is read with ``weights_only=True``, when allowed)."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise ModelError(f"The embedding {path.name} is a pickle file, which can run code when opened, so it is "
                             "refused: use a .safetensors version, or allow pickle files explicitly (--allow-pickle).")
        return {k: list(v.shape) for k, v in _pickle_contents(path).items()}
    if path.suffix.lower() != ".safetensors":
        raise ModelError(f"The embedding {path.name} is not a .safetensors file: choose an embedding saved as "
                         ".safetensors.")
    return {k: entry["shape"] for k, entry in read_header(path).items()}


def inspect(path: Path, table: dict) -> EmbeddingFile:
    def vectors_and_width(key):
        shape = table[key]
        if len(shape) == 1:
            return 1, shape[0]
        if len(shape) == 2 and shape[0] >= 1:
            return shape[0], shape[1]
        raise ModelError(f"The embedding {path.name} has a tensor {key!r} of shape {shape}, which is not a list of "
                         "vectors: choose a textual-inversion embedding file.")

    if set(table) == set(SDXL_KEYS):
        (nl, wl), (ng, wg) = vectors_and_width("clip_l"), vectors_and_width("clip_g")
        if nl != ng:
            raise ModelError(f"The embedding {path.name} has {nl} clip_l vectors but {ng} clip_g vectors: it is "
                             "damaged; download it again.")
        return EmbeddingFile(path, "sdxl", (("clip_l", wl), ("clip_g", wg)), nl)
    if len(table) == 1:
        key = next(iter(table))
        n, width = vectors_and_width(key)
        return EmbeddingFile(path, "a1111" if key == "emb_params" else "diffusers", (("", width),), n)
    keys = ", ".join(sorted(table)[:3])
    raise ModelError(f"{path.name} is not a textual-inversion embedding (its tensors are {keys}…): choose a file "
                     "with one tensor (emb_params, or its token), or SDXL's clip_l and clip_g.")


def check_fits(emb: EmbeddingFile, model_name: str, text_widths: tuple) -> None:
    """Raises ModelError naming both when ``emb`` was made for other text encoders than the model's
    (``text_widths``: ((component, hidden size), ...))."""
    widths = dict(text_widths)
    sdxl_model = "text_encoder_2" in widths
    if sdxl_model:
        model_family = "SDXL"
    else:
        model_family = _FAMILY_BY_WIDTH.get(widths.get("text_encoder"), "SD 1.x/2.x")
    fits = (emb.layout == "sdxl") == sdxl_model and all(widths.get(_COMPONENT[part]) == w for part, w in emb.widths)
    if not fits:
        theirs = emb.family if emb.family != model_family else "another model"
        raise ModelError(f"{emb.path.name} is an embedding for {theirs}, but the model {model_name} is {model_family}: "
                         f"choose an embedding made for {model_family}.")


def check(request, source) -> None:
    """The request's embeddings exist, are allowed, are embeddings whose tokens are in the prompts, and fit the
    model ``source`` (those its prompts name from the embeddings folder are skipped, with a note in the job,
    when they do not); no torch (except to open allowed pickles). Raises BackendError."""
    files, _ = wanted(request.prompt, request.negative_prompt, request.embeddings, allow_pickle=request.allow_pickle)
    if not files:
        return
    from .lora import source_shape

    shape = source_shape(source)
    for path, given in files:
        emb = _usable(path, given, shape.name if shape else "", shape.text_widths if shape else None,
                      allow_pickle=request.allow_pickle, notes=[])
        if emb is not None:
            _check_spelling(emb, request.prompt, request.negative_prompt)


def _check_spelling(emb: EmbeddingFile, prompt: str, negative_prompt: str) -> None:
    """diffusers spreads a token of several vectors over its vectors only where the prompt spells it as loaded
    (in lower case); written otherwise, only its first vector would be used."""
    if emb.vectors < 2:
        return
    for text in (prompt, negative_prompt):
        for m in re.finditer(rf"(?<![\w-]){re.escape(emb.token)}(?![\w-])", text, re.IGNORECASE):
            if m.group(0) != emb.token:
                raise InvalidRequest(f"The embedding {emb.path.name} has {emb.vectors} vectors and is written "
                                     f"{m.group(0)!r} in the prompts: write it in lower case, {emb.token}, so that "
                                     "all of them are used.")


# --- applying them (the worker thread) -------------------------------------------------------------

def apply(ctx, model, prompt: str, negative_prompt: str, embeddings, *, allow_pickle: bool = False) -> list[str]:
    files, notes = wanted(prompt, negative_prompt, embeddings, allow_pickle=allow_pickle)
    if not files:
        return notes
    pipe = model.inpaint
    if not hasattr(pipe, "load_textual_inversion"):
        raise ModelError(f"The model {model.name} cannot take textual-inversion embeddings: remove them, or choose an "
                         "SD 1.x, 2.x or SDXL model.")
    from .lora import file_key, loaded_shape

    state = getattr(model, "embedding_state", None)
    if state is None:
        state = model.embedding_state = {}
        model.embedding_loads = 0
    todo = []
    for path, given in files:
        key = file_key(path)
        if state.get(token_of(path)) == key:
            continue
        emb = _usable(path, given, model.name, loaded_shape(model).text_widths, allow_pickle=allow_pickle,
                      notes=notes)
        if emb is None:
            continue
        _check_spelling(emb, prompt, negative_prompt)
        todo.append((emb, key))
    for emb, key in todo:
        ctx.stage(f"Loading embedding {emb.token}")
        if emb.token in state:  # the same name from another file, or the file changed
            _unload(pipe, emb.token)
            del state[emb.token]
        _load(model, emb)
        state[emb.token] = key
        ctx.check_cancel()
    return notes


def _tensors(emb: EmbeddingFile) -> dict:
    if emb.path.suffix.lower() in PICKLE_SUFFIXES:
        return _pickle_contents(emb.path)
    from safetensors.torch import load_file

    return load_file(str(emb.path))


def _targets(pipe, emb: EmbeddingFile):
    if emb.layout == "sdxl":
        return [("clip_l", pipe.text_encoder, pipe.tokenizer), ("clip_g", pipe.text_encoder_2, pipe.tokenizer_2)]
    return [(None, pipe.text_encoder, pipe.tokenizer)]


def _load(model, emb: EmbeddingFile) -> None:
    pipe = model.inpaint
    tensors = _tensors(emb)
    model.embedding_loads += 1
    try:
        for part, text_encoder, tokenizer in _targets(pipe, emb):
            tensor = tensors[part] if part else next(iter(tensors.values()))
            pipe.load_textual_inversion(tensor, token=emb.token, text_encoder=text_encoder, tokenizer=tokenizer)
    except ValueError as exc:
        _unload(pipe, emb.token)
        if "already in tokenizer vocabulary" in str(exc):
            raise ModelError(f"The embedding {emb.path.name} is named {emb.token}, which the text encoder already "
                             f"reads as a word: rename the file (e.g. {emb.token}-embedding) and write that name in "
                             "the prompt.") from exc
        raise ModelError(f"The embedding {emb.path.name} could not be loaded ({str(exc).splitlines()[0][:160]}): "
                         "choose a textual-inversion embedding file.") from exc


def _unload(pipe, token: str) -> None:
    """Removes ``token`` (and its extra vectors' tokens) from every tokenizer that has it."""
    for tokenizer, text_encoder in ((pipe.tokenizer, pipe.text_encoder),
                                    (getattr(pipe, "tokenizer_2", None), getattr(pipe, "text_encoder_2", None))):
        if tokenizer is None or token not in tokenizer.added_tokens_encoder:
            continue
        pipe.unload_textual_inversion(token, tokenizer=tokenizer, text_encoder=text_encoder)
