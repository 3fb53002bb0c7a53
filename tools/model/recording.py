"""What every parity recorder reads off a transformers forward pass: what its language model received, and a cache's per-layer keys / values."""

from __future__ import annotations


def cache_kv(cache, i: int):
    """Layer `i`'s keys and values of a transformers cache."""
    if hasattr(cache, "layers"):
        return cache.layers[i].keys, cache.layers[i].values
    return cache.key_cache[i], cache.value_cache[i]  # older transformers


def forward_capturing(model, language_model, inputs, names=("inputs_embeds",)):
    """`model(**inputs)` with attentions and a cache, and detached copies of the keyword arguments
    `names` its `language_model` received: `(output, {name: tensor})`."""
    captured = {}

    def pre_hook(_module, _args, kwargs):
        for name in names:
            captured[name] = kwargs[name].detach().clone()

    hook = language_model.register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        out = model(**inputs, output_attentions=True, use_cache=True, return_dict=True)
    finally:
        hook.remove()
    return out, captured
