"""Prompted ViT, its prompt hooks (appended, carried) and CAVPT blocks on a tiny CLIP."""

import pytest
import torch
from clip.model import CLIP

from models.prompting import DeepPrompt
from models.settings import CAVPTCfg
from models.visual import CAVPT, AppendedPrompts, CarriedPrompts, PromptedViT, require_vit


@pytest.fixture(scope="module")
def clip_model(small_clip):
    return small_clip


@pytest.fixture(scope="module")
def images(image_batch):
    return image_batch[0][:2]


def test_without_prompts_it_is_clip(clip_model, images):
    encoder = PromptedViT(clip_model.visual)
    assert (encoder.n_layers, encoder.width) == (3, 64)
    with torch.no_grad():
        torch.testing.assert_close(encoder(images), clip_model.visual(images))
        no_tokens = DeepPrompt(3, 0, 64)
        torch.testing.assert_close(
            encoder(images, AppendedPrompts(no_tokens)), clip_model.visual(images)
        )


def test_deep_prompt_changes_features_and_gets_gradients(clip_model, images):
    encoder = PromptedViT(clip_model.visual)
    prompt = DeepPrompt(2, 4, encoder.width)  # first two of three blocks
    assert prompt(2, torch.zeros(5, 2, 64)) is None
    assert prompt(1, torch.zeros(5, 2, 64)).shape == (4, 2, 64)
    features = encoder(images, AppendedPrompts(prompt))
    with torch.no_grad():
        assert not torch.allclose(features, clip_model.visual(images))
    features.sum().backward()
    assert prompt.tokens.grad.abs().sum(dim=(1, 2)).gt(0).all()


def test_appended_tokens_are_dropped_after_each_block(clip_model, images):
    seen = []

    def record(block, sequence):
        seen.append(sequence.shape[0])
        return torch.zeros(block + 1, sequence.shape[1], sequence.shape[2])

    PromptedViT(clip_model.visual)(images, AppendedPrompts(record))
    assert seen == [17, 17, 17]  # CLS + 16 patches entering every block


def test_carried_prompts_are_replaced_up_to_their_depth_and_kept_after(clip_model, images):
    """Input tokens enter before ln_pre; block 1 gets fresh ones in their place; block 2
    (past the depth) gets what block 1 left there."""
    input_tokens, block_1 = torch.randn(2, 64), torch.randn(2, 64)
    prompts = CarriedPrompts(input_tokens, [block_1])
    entering = []  # the sequence entering each block, as its first LayerNorm sees it
    handles = [
        block.ln_1.register_forward_pre_hook(lambda module, args: entering.append(args[0]))
        for block in clip_model.visual.transformer.resblocks
    ]
    try:
        with torch.no_grad():
            PromptedViT(clip_model.visual)(images, prompts)
    finally:
        for handle in handles:
            handle.remove()
    assert [x.shape[0] for x in entering] == [17 + 2] * 3  # carried through every block
    torch.testing.assert_close(entering[1][-2:], block_1[:, None].expand(-1, 2, -1))
    assert not torch.allclose(entering[2][-2:], block_1[:, None].expand(-1, 2, -1))
    ln_pre = clip_model.visual.ln_pre
    with torch.no_grad():
        assert torch.allclose(entering[0][-2:], ln_pre(input_tokens)[:, None].expand(-1, 2, -1))


def test_cavpt_block_shapes_and_detached_keys():
    settings = CAVPTCfg(n_kv=3, attn_dim=8)
    cavpt = CAVPT(2, settings, text_dim=32, width=64, n_classes=5)
    tokens = torch.randn(17, 2, 64, requires_grad=True)
    class_text = torch.randn(2, 4, 32, requires_grad=True)
    prompts, logits = cavpt(1, tokens, class_text)
    assert prompts.shape == (4, 2, 64) and logits.shape == (4, 2, 5)
    (prompts.sum() + logits.sum()).backward()
    assert tokens.grad is None  # keys and values see the image tokens detached
    assert class_text.grad.abs().sum() > 0  # the queries come from the text features
    block = cavpt.blocks[1]
    assert block.kv_tokens.grad.abs().sum() > 0
    assert cavpt.blocks[0].kv_tokens.grad is None
    assert (block.q_proj.out_features, block.kv_tokens.shape) == (8, (3, 64))


def test_recorded_attention_is_what_the_forward_pass_used():
    torch.manual_seed(0)
    cavpt = CAVPT(2, CAVPTCfg(n_kv=3, attn_dim=8), text_dim=32, width=64, n_classes=5)
    tokens, class_text = torch.randn(17, 2, 64), torch.randn(2, 4, 32)
    plain = [cavpt(j, tokens, class_text) for j in (0, 1)]
    with cavpt.recording_attention() as log:
        recorded = [cavpt(j, tokens, class_text) for j in (0, 1)]
    assert [block.attention_log for block in cavpt.blocks] == [None, None]
    for (p0, l0), (p1, l1) in zip(plain, recorded):
        assert torch.equal(p0, p1) and torch.equal(l0, l1)  # recording changes nothing
    assert [a.shape for a in log] == [(2, 4, 17 + 3)] * 2  # [B, K, tokens + kv tokens]
    torch.testing.assert_close(log[1].sum(-1), torch.ones(2, 4))
    # The auxiliary logits follow from the recorded weights: they are the pass's own.
    block = cavpt.blocks[1]
    kv = torch.cat([tokens.transpose(0, 1), block.kv_tokens.expand(2, -1, -1)], dim=1)
    attended = block.v_proj(log[1] @ kv)
    torch.testing.assert_close(block.classifier(block.logit_norm(attended)), l1.transpose(0, 1))
    cavpt(0, tokens, class_text)
    assert len(log) == 2  # nothing recorded after the context


def test_cavpt_in_half_precision_keeps_float32_parameters():
    cavpt = CAVPT(1, CAVPTCfg(), text_dim=32, width=64, n_classes=5)
    tokens = torch.randn(17, 2, 64).to(torch.bfloat16)
    prompts, logits = cavpt(0, tokens, torch.randn(2, 3, 32).to(torch.bfloat16))
    assert prompts.dtype == logits.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in cavpt.parameters())
    logits.float().sum().backward()
    assert cavpt.blocks[0].classifier.weight.grad.dtype == torch.float32


def test_resnet_clip_is_rejected():
    resnet_clip = CLIP(32, 64, (1, 1, 1, 1), 8, None, 77, 49408, 64, 1, 1)
    with pytest.raises(TypeError, match="needs a ViT CLIP backbone.*ModifiedResNet"):
        require_vit(resnet_clip, "DPT")
