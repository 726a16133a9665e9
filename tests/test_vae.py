"""VAE and CVAE: bounds against a linear-Gaussian model with an analytic log p(x)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch

from physgen.models.vae import _LOG_2PI, CVAE, VAE, gaussian_kl, gaussian_log_prob

D, L, SIGMA = 5, 2, 0.5


def _linear_gaussian(generator: torch.Generator) -> tuple[VAE, torch.Tensor, torch.Tensor]:
    """A VAE whose decoder is x = W z + b + σε with orthogonal W columns (float64).

    Returns the model with its encoder set to the exact posterior, data x drawn from the
    model, and the analytic log p(x) = log N(x; b, WWᵀ + σ²I).
    """
    model = VAE((D,), latent_dim=L, hidden=(), sigma=SIGMA).double()
    q, _ = torch.linalg.qr(torch.randn(D, L, generator=generator, dtype=torch.float64))
    W = q * torch.tensor([2.0, 0.7], dtype=torch.float64)  # orthogonal columns → diagonal Σ
    b = torch.randn(D, generator=generator, dtype=torch.float64)
    dec = model.decoder.net[0]
    enc, head = model.encoder.net[0], model.encoder_head
    post_var = 1.0 / (1.0 + (W**2).sum(0) / SIGMA**2)  # Σ = (I + WᵀW/σ²)⁻¹, diagonal
    with torch.no_grad():
        dec.weight.copy_(W)
        dec.bias.copy_(b)
        enc.weight.zero_()
        enc.weight[:D].copy_(torch.eye(D, dtype=torch.float64))
        enc.bias.zero_()
        head.weight.zero_()
        head.weight[:L, :D].copy_(post_var[:, None] * W.T / SIGMA**2)  # μ = Σ Wᵀ(x − b)/σ²
        head.bias[:L].copy_(-(post_var[:, None] * W.T / SIGMA**2) @ b)
        head.bias[L:].copy_(post_var.log())
    z = torch.randn(400, L, generator=generator, dtype=torch.float64)
    x = z @ W.T + b + SIGMA * torch.randn(400, D, generator=generator, dtype=torch.float64)
    cov = W @ W.T + SIGMA**2 * torch.eye(D, dtype=torch.float64)
    log_px = torch.distributions.MultivariateNormal(b, cov).log_prob(x)
    return model, x, log_px


def _mean_elbo(model: VAE, x: torch.Tensor, draws: int) -> torch.Tensor:
    return torch.stack([model.elbo(x) for _ in range(draws)]).mean(0)


def test_bounds_are_tight_at_the_exact_posterior(generator: torch.Generator) -> None:
    torch.manual_seed(0)
    model, x, log_px = _linear_gaussian(generator)
    with torch.no_grad():
        # Every importance weight equals p(x) exactly, so any K gives log p(x).
        torch.testing.assert_close(model.iwae(x, k=1), log_px, rtol=0, atol=1e-9)
        torch.testing.assert_close(model.iwae(x, k=7), log_px, rtol=0, atol=1e-9)
        # The single-draw ELBO is unbiased for log p(x) here; average many draws.
        gap = (_mean_elbo(model, x, 400) - log_px).mean()
    assert abs(gap.item()) < 0.01


def test_elbo_below_iwae_tightening_with_k_below_log_px(generator: torch.Generator) -> None:
    torch.manual_seed(1)
    model, x, log_px = _linear_gaussian(generator)
    with torch.no_grad():
        model.encoder_head.bias[:L] += 0.6  # a wrong posterior mean
        model.encoder_head.bias[L:] += 1.0  # and a too-wide posterior
        elbo = _mean_elbo(model, x, 50).mean()
        iwae = {
            k: torch.stack([model.iwae(x, k=k) for _ in range(10)]).mean() for k in (2, 16, 256)
        }
    true = log_px.mean()
    assert elbo < iwae[2] < iwae[16] < iwae[256] < true
    # The gap closes: K=256 recovers most of the ELBO's gap.
    assert (true - iwae[256]) < 0.1 * (true - elbo)


def test_analytic_kl_matches_monte_carlo(generator: torch.Generator) -> None:
    mu, logvar = torch.randn(2, 3, 4, generator=generator, dtype=torch.float64).unbind(0)
    mu_p, logvar_p = torch.randn(2, 3, 4, generator=generator, dtype=torch.float64).unbind(0)
    n = 200_000
    z = mu + (0.5 * logvar).exp() * torch.randn(n, 3, 4, generator=generator, dtype=torch.float64)
    log_q = gaussian_log_prob(z, mu, logvar)
    for args, log_p in (
        ((mu_p, logvar_p), gaussian_log_prob(z, mu_p, logvar_p)),
        ((None, None), gaussian_log_prob(z, torch.zeros_like(mu), torch.zeros_like(mu))),
    ):
        mc = (log_q - log_p).mean(0)
        se = (log_q - log_p).std(0) / math.sqrt(n)
        kl = gaussian_kl(mu, logvar, *args)
        assert torch.all((mc - kl).abs() < 4 * se + 1e-12)


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
@pytest.mark.parametrize("shape", [(7,), (1, 15), (2, 9, 6)])
def test_vae_shapes_and_sampling(likelihood: str, shape: tuple[int, ...]) -> None:
    model = VAE.for_shape(shape, latent_dim=3, hidden=(16,), channels=(4, 8), likelihood=likelihood)
    x = torch.rand(4, *shape)
    assert model.loss(x).shape == (4,)
    assert model.iwae(x, k=3).shape == (4,)
    sample = model.sample(5, mean=False)
    assert sample.shape == (5, *shape)
    if likelihood == "bernoulli":
        assert set(sample.unique().tolist()) <= {0.0, 1.0}


def test_beta_scales_only_the_kl_term() -> None:
    torch.manual_seed(0)
    model = VAE((4,), latent_dim=2, hidden=(8,), sigma=1.0)
    x = torch.randn(6, 4)
    torch.manual_seed(3)
    rec, kl, _ = model._terms(x, None)
    model.beta = 0.25
    torch.manual_seed(3)
    torch.testing.assert_close(model.loss(x), -(rec - 0.25 * kl))


@pytest.mark.parametrize("prior", ["learned", "standard"])
def test_cvae_conditions_every_part(prior: str) -> None:
    torch.manual_seed(0)
    model = CVAE((1, 12), (3,), latent_dim=2, hidden=(16,), channels=(4,), prior=prior)
    x, c = torch.randn(5, 1, 12), torch.randn(5, 3)
    assert model.loss(x, c).shape == (5,)
    mu_p, logvar_p = model.prior(c, 5)
    if prior == "standard":
        assert torch.all(mu_p == 0) and torch.all(logvar_p == 0)
    else:
        assert not torch.allclose(mu_p[0], mu_p[1])
    # The decoder depends on the condition.
    z = torch.zeros(2, 2)
    out = model.decode(z, torch.stack([c[0], c[1]]))
    assert not torch.allclose(out[0], out[1])
    # One condition broadcasts over the samples; a wrong shape is refused clearly.
    assert model.sample(4, cond=c[0]).shape == (4, 1, 12)
    with pytest.raises(ValueError, match="cond must have shape"):
        model.sample(4, cond=torch.zeros(2, 5))
    with pytest.raises(ValueError, match="needs cond"):
        model.loss(x)


def test_cvae_iwae_is_above_elbo_on_average() -> None:
    torch.manual_seed(0)
    model = CVAE((6,), (2,), latent_dim=2, hidden=(16,)).double()
    x, c = torch.randn(64, 6, dtype=torch.float64), torch.randn(64, 2, dtype=torch.float64)
    with torch.no_grad():
        elbo = torch.stack([model.elbo(x, c) for _ in range(40)]).mean()
        iwae = torch.stack([model.iwae(x, c, k=64) for _ in range(4)]).mean()
    assert iwae > elbo


def test_vae_training_improves_the_bound() -> None:
    torch.manual_seed(0)
    data = torch.randn(256, 2) @ torch.tensor([[1.0, 0.5, 0.0, -1.0], [0.0, 1.0, 2.0, 0.3]])
    model = VAE((4,), latent_dim=2, hidden=(32,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    with torch.no_grad():
        before = model.iwae(data, k=16).mean()
    for _ in range(300):
        opt.zero_grad()
        model.loss(data).mean().backward()
        opt.step()
    with torch.no_grad():
        after = model.iwae(data, k=16).mean()
    assert after > before + 3.0


def test_bernoulli_likelihood_refuses_data_outside_the_unit_interval() -> None:
    model = VAE((4,), latent_dim=2, hidden=(8,), likelihood="bernoulli")
    x = torch.rand(3, 4)
    assert torch.isfinite(model.loss(x)).all()
    with pytest.raises(ValueError, match=r"likelihood='bernoulli' needs data in \[0, 1\]"):
        model.loss(x - 0.5)


def _old_loss(model: CVAE, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The loss composed from the public pieces, each embedding the condition itself (three
    runs of the condition encoder): the computation the shared embedding replaces."""
    mu, logvar = model.encode(x, c)
    z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
    mu_p, logvar_p = model.prior(c, x.shape[0])
    kl = gaussian_kl(mu, logvar, mu_p, logvar_p)
    rec = model.log_likelihood(x, model.decoder_output(z, c))
    return -(rec - model.beta * kl)


@pytest.mark.parametrize(
    ("cond_shape", "prior"), [((3,), "learned"), ((3,), "standard"), ((1, 12), "learned")]
)
def test_cvae_loss_embeds_the_condition_once(cond_shape: tuple[int, ...], prior: str) -> None:
    """One condition-encoder run per loss, and the same loss to the bit as the three-run
    composition (same seed, float64), with gradients equal up to rounding."""
    torch.manual_seed(0)
    model = CVAE((1, 12), cond_shape, latent_dim=2, hidden=(16,), channels=(4,), prior=prior)
    model = model.double()
    x = torch.randn(5, 1, 12, dtype=torch.float64)
    c = torch.randn(5, *cond_shape, dtype=torch.float64)
    calls = []
    assert model.cond_encoder is not None
    model.cond_encoder.register_forward_hook(lambda *_: calls.append(1))

    def run(loss_fn: object) -> tuple[torch.Tensor, list[torch.Tensor]]:
        calls.clear()
        model.zero_grad()
        torch.manual_seed(7)
        loss = loss_fn(x, c)  # type: ignore[operator]
        loss.sum().backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    new, new_grads = run(model.loss)
    assert len(calls) == 1
    old, old_grads = run(lambda x, c: _old_loss(model, x, c))
    assert len(calls) == 3  # negative control: the hook sees every run of the encoder
    torch.testing.assert_close(new, old, rtol=0, atol=0)
    assert len(new_grads) == len(old_grads)
    # The encoder's gradient sums the three uses before its backward instead of after: equal
    # up to float64 rounding of that sum (a few ulps of the largest entry).
    eps = torch.finfo(torch.float64).eps
    for g_new, g_old in zip(new_grads, old_grads, strict=True):
        torch.testing.assert_close(g_new, g_old, rtol=0, atol=16 * eps * g_old.abs().max().item())
    # A different noise draw changes the loss: the comparison can tell losses apart.
    torch.manual_seed(8)
    assert not torch.equal(_old_loss(model, x, c).detach(), new)


def test_cvae_iwae_and_sample_embed_the_condition_once() -> None:
    torch.manual_seed(0)
    model = CVAE((6,), (2,), latent_dim=2, hidden=(16,)).double()
    x, c = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    calls = []
    assert model.cond_encoder is not None
    model.cond_encoder.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        model.iwae(x, c, k=8)
    assert len(calls) == 1
    calls.clear()
    model.sample(3, cond=c[0])
    assert len(calls) == 1


@pytest.mark.parametrize("prior", ["learned", "standard"])
def test_cvae_iwae_is_the_bound_composed_from_the_public_pieces(prior: str) -> None:
    r"""``L_K = logsumexp_k [log p(x|z_k,c) + log p(z_k|c) - log q(z_k|x,c)] - log K`` with
    the K draws taken one at a time from the same noise, each piece from its public method:
    equal to float64 rounding of a dozen-term sum (1e-12 relative is ~50 ulps)."""
    torch.manual_seed(0)
    model = CVAE((6,), (2,), latent_dim=2, hidden=(16,), prior=prior).double()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.5)  # a condition-dependent prior and decoder
    x, c = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    k = 5

    def composed(cond: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(3)
        mu, logvar = model.encode(x, cond)
        eps = torch.randn(k, *mu.shape, dtype=torch.float64)
        mu_p, logvar_p = model.prior(cond, x.shape[0])
        log_w = []
        for j in range(k):
            z = mu + (0.5 * logvar).exp() * eps[j]
            log_w.append(
                model.log_likelihood(x, model.decoder_output(z, cond))
                + gaussian_log_prob(z, mu_p, logvar_p)
                - gaussian_log_prob(z, mu, logvar)
            )
        return torch.logsumexp(torch.stack(log_w), 0) - math.log(k)

    with torch.no_grad():
        torch.manual_seed(3)
        got = model.iwae(x, c, k=k)
        want = composed(c)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
        # Negative control: the conditions paired with the wrong samples give another bound.
        assert (composed(c.flip(0)) - want).abs().min() > 1e-3


def test_cvae_sample_draws_the_conditional_prior_and_decodes_each_case_with_its_own_cond() -> None:
    """``sample`` is z ~ p(z | c_i), then the decoder mean at (z, c_i), case by case: equal
    to its composition from the public pieces with the same draws (the same float64
    operations, so to the bit)."""
    torch.manual_seed(0)
    model = CVAE((6,), (2,), latent_dim=2, hidden=(16,), prior="learned").double()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.5)  # a condition-dependent prior and decoder
    c = torch.randn(4, 2, dtype=torch.float64)

    def composed(cond: torch.Tensor) -> torch.Tensor:
        mu_p, logvar_p = model.prior(cond, 4)
        eps = torch.randn(
            mu_p.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64
        )
        return model.decoder_output(mu_p + (0.5 * logvar_p).exp() * eps, cond)

    with torch.no_grad():
        got = model.sample(4, cond=c, generator=torch.Generator().manual_seed(5))
        want = composed(c)
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        # Negative control: the conditions paired with the wrong cases give other fields.
        assert (composed(c.flip(0)) - want).flatten(1).norm(dim=1).min() > 1e-3


def _set_scale(model: VAE, weight: float, bias: float) -> None:
    """Fill the last linear layer of ``model.scale_net`` (raw log scale r; log s = 7 tanh(r/7))."""
    last = [m for m in model.scale_net.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.fill_(weight)  # python floats: exact in float64
        last.bias.fill_(bias)


@pytest.mark.parametrize("decoder_scale", ["sample", "pixel"])
def test_a_constant_predicted_scale_gives_the_linear_gaussian_log_px(
    generator: torch.Generator, decoder_scale: str
) -> None:
    # The linear-Gaussian model again, with σ now produced by the scale network (constant in
    # z): the IWAE bound at the exact posterior is log p(x) to rounding, for any K.
    reference, x, log_px = _linear_gaussian(generator)
    model = VAE((D,), latent_dim=L, hidden=(), decoder_scale=decoder_scale).double()
    model.load_state_dict(reference.state_dict(), strict=False)
    raw = 7.0 * math.atanh(math.log(SIGMA) / 7.0)
    _set_scale(model, 0.0, raw)
    with torch.no_grad():
        torch.testing.assert_close(model.iwae(x, k=5), log_px, rtol=0, atol=1e-9)
        std = model.decode_std(torch.zeros(3, L, dtype=torch.float64))
        torch.testing.assert_close(std, torch.full((3, D), SIGMA, dtype=torch.float64))
        _set_scale(model, 0.0, raw + 0.05)  # control: σ off by 5 %
        # data drawn with σ score lower on average under σ·1.05 (a KL divergence, > 0)
        assert (log_px - model.iwae(x, k=5)).mean() > 1e-3


def _scale_mixture(a: float, c: float) -> tuple[VAE, Callable[[torch.Tensor], torch.Tensor]]:
    """A one-latent VAE with mean 0 and log s(z) = 7 tanh((a z + c)/7) on every value, its
    posterior set to the prior, and the exact log p(x) = log ∫ N(z) N(x; 0, s(z)² I) dz
    by 200-point Gauss–Hermite quadrature (float64)."""
    model = VAE((D,), latent_dim=1, hidden=(), decoder_scale="pixel").double()
    with torch.no_grad():
        for p in (*model.decoder.parameters(), *model.encoder_head.parameters()):
            p.zero_()
    _set_scale(model, a, c)
    nodes, weights = np.polynomial.hermite_e.hermegauss(200)  # ∫ e^{-z²/2} f(z) dz
    log_s = torch.as_tensor(7.0 * np.tanh((a * nodes + c) / 7.0))
    log_w = torch.as_tensor(np.log(weights / math.sqrt(2 * math.pi)))

    def log_px(x: torch.Tensor) -> torch.Tensor:
        sq = x.pow(2).sum(1, keepdim=True)  # (N, 1)
        log_n = -0.5 * (D * _LOG_2PI + 2 * D * log_s + sq * torch.exp(-2 * log_s))
        return torch.logsumexp(log_w + log_n, dim=1)

    return model, log_px


def test_a_code_dependent_scale_gives_the_scale_mixture_likelihood() -> None:
    # p(x|z) = N(0, s(z)² I) with s depending on z: p(x) is a Gaussian scale mixture with no
    # single σ. Averaged IWAE bounds (q = prior, so each weight is p(x|z)) converge to the
    # quadrature log p(x); the tolerance is 4 standard errors of that average.
    torch.manual_seed(0)
    model, log_px = _scale_mixture(0.8, -0.3)
    x = torch.tensor([[0.1, -0.2, 0.3, 0.0, 0.2], [1.5, -2.0, 0.7, 1.1, -0.4]], dtype=torch.float64)
    with torch.no_grad():
        runs = torch.stack([model.iwae(x, k=4096) for _ in range(16)])
    mean, se = runs.mean(0), runs.std(0) / 4.0
    truth = log_px(x)
    assert torch.all((mean - truth).abs() < 4 * se + 1e-3)
    _, wrong = _scale_mixture(0.8, 0.0)  # control: the offset of log s dropped
    assert torch.all((mean - wrong(x)).abs() > 10 * se + 1e-3)
    # Draws with noise have the mixture's variance E[s(z)²] per value.
    with torch.no_grad():
        draws = model.sample(100_000, mean=False, generator=torch.Generator().manual_seed(1))
    nodes, weights = np.polynomial.hermite_e.hermegauss(200)
    var = float((weights * np.exp(14.0 * np.tanh((0.8 * nodes - 0.3) / 7.0))).sum())
    var /= math.sqrt(2 * math.pi)
    se_var = float(draws.pow(2).var(0).sqrt().mean()) / math.sqrt(draws.shape[0])
    assert (draws.pow(2).mean(0) - var).abs().max() < 4 * se_var


def test_decoder_scale_refuses_bad_combinations() -> None:
    with pytest.raises(ValueError, match="decoder_scale must be one of"):
        VAE((4,), decoder_scale="channel")
    with pytest.raises(ValueError, match="sigma=None"):
        VAE((4,), decoder_scale="sample", sigma=0.5)
    with pytest.raises(ValueError, match="likelihood='gaussian'"):
        VAE((4,), decoder_scale="pixel", likelihood="bernoulli")
    model = VAE((4,), latent_dim=2, hidden=(8,), decoder_scale="sample")
    with pytest.raises(ValueError, match="needs the logvar"):
        model.log_likelihood(torch.zeros(2, 4), torch.zeros(2, 4))


@pytest.mark.parametrize("shape", [(1, 6), (2, 4, 5)])
def test_spectral_scale_is_a_gaussian_with_dct_diagonal_covariance(shape: tuple[int, ...]) -> None:
    # p(x|z) = N(m(z), Cᵀ diag s(z)² C) with C the orthonormal DCT-II over the grid axes;
    # the covariance is built from scipy's dctn applied to each basis vector.
    from scipy.fft import dctn

    torch.manual_seed(0)
    model = VAE(shape, latent_dim=2, arch="mlp", hidden=(), decoder_scale="spectral").double()
    with torch.no_grad():
        model.scale_net.net[0].weight.normal_(0.0, 0.5)
        model.decoder.net[0].weight.normal_()
    z = torch.randn(3, 2, dtype=torch.float64)
    x = torch.randn(3, *shape, dtype=torch.float64)
    d = math.prod(shape)
    grid_axes = tuple(range(1, len(shape)))
    basis = np.eye(d).reshape(d, *shape)
    cmat = np.stack([dctn(e, type=2, axes=grid_axes, norm="ortho").ravel() for e in basis], 1)
    with torch.no_grad():
        mean = model.decode(z)
        logvar = model._decoder_logvar(z, None)
        got = model.log_likelihood(x, mean, logvar)
        std = model.decode_std(z)
    for b in range(3):
        s2 = logvar[b].exp().numpy()
        cov = torch.as_tensor(cmat.T @ np.diag(s2) @ cmat)
        truth = torch.distributions.MultivariateNormal(mean[b].flatten(), cov)
        torch.testing.assert_close(got[b], truth.log_prob(x[b].flatten()), rtol=1e-12, atol=1e-9)
        torch.testing.assert_close(std[b].flatten(), cov.diagonal().sqrt(), rtol=1e-12, atol=0)
        # control: the same scales on the values themselves (no transform) is another density
        pixel = torch.distributions.MultivariateNormal(mean[b].flatten(), torch.diag(cov.diag()))
        assert abs(got[b] - pixel.log_prob(x[b].flatten())) > 1e-3


def test_spectral_draws_have_the_dct_covariance() -> None:
    torch.manual_seed(0)
    model = VAE((1, 6), latent_dim=1, hidden=(), decoder_scale="spectral").double()
    with torch.no_grad():
        for p in (*model.decoder.parameters(), *model.scale_net.parameters()):
            p.zero_()
        model.scale_net.net[0].bias.copy_(torch.linspace(0.5, -1.0, 6, dtype=torch.float64))
    n = 100_000
    with torch.no_grad():
        draws = model.sample(n, mean=False, generator=torch.Generator().manual_seed(2))
    from scipy.fft import dct

    c = dct(np.eye(6), type=2, axis=0, norm="ortho")
    s2 = np.exp(2 * 7.0 * np.tanh(np.linspace(0.5, -1.0, 6) / 7.0))
    cov = c.T @ np.diag(s2) @ c
    emp = np.cov(draws.flatten(1).numpy(), rowvar=False)
    se = np.sqrt((np.outer(cov.diagonal(), cov.diagonal()) + cov**2) / n)  # Wishart sd
    assert np.all(np.abs(emp - cov) < 5 * se)
    assert np.abs(emp - np.diag(cov.diagonal())).max() > 20 * se.max()  # not independent


def _dct_columns(shape: tuple[int, ...]) -> np.ndarray:
    """The orthonormal DCT-II over the grid axes of ``shape`` as a matrix, from scipy's dctn."""
    from scipy.fft import dctn

    d = math.prod(shape)
    basis = np.eye(d).reshape(d, *shape)
    axes = tuple(range(1, len(shape)))
    return np.stack([dctn(e, type=2, axes=axes, norm="ortho").ravel() for e in basis], 1)


def _random_spectral(shape: tuple[int, ...], decoder_scale: str) -> VAE:
    """A float64 spectral VAE with random linear decoder and scale maps (seed 0)."""
    torch.manual_seed(0)
    model = VAE(shape, latent_dim=2, arch="mlp", hidden=(), decoder_scale=decoder_scale).double()
    with torch.no_grad():
        model.scale_net.net[0].weight.normal_(0.0, 0.5)
        model.scale_net.net[0].bias.normal_(0.0, 0.5)
        model.decoder.net[0].weight.normal_()
    return model


@pytest.mark.parametrize("shape", [(1, 6), (2, 4, 5)])
def test_global_dc_scale_is_the_dct_gaussian_with_a_learned_constant_dc_variance(
    shape: tuple[int, ...],
) -> None:
    # p(x|z) = N(m(z), Cᵀ diag s² C) with log s_k = 7 tanh(r_k/7), r_k the scale network's
    # output for k ≠ 0 and the parameter r₀ of the channel for its DC coefficient (k = 0).
    model = _random_spectral(shape, "spectral_global_dc")
    channels, per_channel = shape[0], math.prod(shape[1:])
    r0 = torch.tensor([0.3, -1.1][:channels], dtype=torch.float64)
    with torch.no_grad():
        model.dc_log_scale.copy_(r0)
    z = torch.randn(3, 2, dtype=torch.float64)
    x = torch.randn(3, *shape, dtype=torch.float64)
    cmat = _dct_columns(shape)
    plain = _random_spectral(shape, "spectral")  # the same networks, DC scale from z
    plain.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        mean = model.decode(z)
        raw = model.scale_net.net[0](z).reshape(3, channels, per_channel)
        got = model.log_likelihood(x, mean, model._decoder_logvar(z, None))
        std = model.decode_std(z)
        control = plain.log_likelihood(x, mean, plain._decoder_logvar(z, None))
    for b in range(3):
        r = raw[b].clone()
        r[:, 0] = r0
        s2 = np.exp(2 * 7.0 * np.tanh(r.flatten().numpy() / 7.0))
        cov = torch.as_tensor(cmat.T @ np.diag(s2) @ cmat)
        truth = torch.distributions.MultivariateNormal(mean[b].flatten(), cov)
        torch.testing.assert_close(got[b], truth.log_prob(x[b].flatten()), rtol=1e-12, atol=1e-9)
        torch.testing.assert_close(std[b].flatten(), cov.diagonal().sqrt(), rtol=1e-12, atol=0)
        # control: the DC scale predicted from z (plain "spectral") is another density
        assert abs(control[b] - got[b]) > 1e-3


def test_global_dc_scale_does_not_depend_on_the_code() -> None:
    shape = (2, 4, 5)
    z = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model = _random_spectral(shape, "spectral_global_dc")
        model.dc_log_scale.fill_(0.4)
        logvar = model._decoder_logvar(z, None).reshape(4, 2, -1)
        plain = _random_spectral(shape, "spectral")._decoder_logvar(z, None).reshape(4, 2, -1)
    torch.testing.assert_close(
        logvar[:, :, 0], torch.full((4, 2), 14.0 * math.tanh(0.4 / 7.0), dtype=torch.float64),
        rtol=1e-15, atol=0,
    )  # fmt: skip
    assert (logvar[:, :, 1:] - logvar[:1, :, 1:]).abs().amax() > 1e-3  # the rest moves with z
    assert (plain[:, :, 0] - plain[:1, :, 0]).abs().amax() > 1e-3  # control: a predicted DC


@pytest.mark.parametrize("decoder_mean", ["field", "constant"])
def test_global_dc_draws_are_the_mean_plus_the_inverse_dct_of_the_scaled_noise(
    decoder_mean: str,
) -> None:
    # decode_draw(z, ε) = m(z) + Cᵀ(s ⊙ ε), s_k from the code for k ≠ 0 and s₀ = e^{7 tanh(r₀/7)}.
    shape = (2, 4, 5)
    model = _random_spectral(shape, "spectral_global_dc")
    if decoder_mean == "constant":
        options = {"decoder_scale": "spectral_global_dc", "decoder_mean": "constant"}
        constant = VAE(shape, latent_dim=2, arch="mlp", hidden=(), **options).double()
        constant.load_state_dict(model.state_dict())
        model = constant
    with torch.no_grad():
        model.dc_log_scale.copy_(torch.tensor([0.8, -0.6], dtype=torch.float64))
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(3, 2, dtype=torch.float64, generator=gen)
    eps = torch.randn(3, *shape, dtype=torch.float64, generator=gen)
    cmat = _dct_columns(shape)
    with torch.no_grad():
        mean = model.decode(z)
        raw = model.scale_net.net[0](z).reshape(3, shape[0], -1)
        raw[:, :, 0] = model.dc_log_scale
        s = torch.exp(7.0 * torch.tanh(raw / 7.0)).flatten(1)
        draw = model.decode_draw(z, eps)
    want = mean.flatten(1) + (s * eps.flatten(1)) @ torch.as_tensor(cmat)  # rows: Cᵀ(s ⊙ ε)
    torch.testing.assert_close(draw.flatten(1), want, rtol=1e-12, atol=1e-12)
    # control: the same scaled noise left in the pixel basis is another draw
    assert (draw.flatten(1) - (mean.flatten(1) + s * eps.flatten(1))).abs().amax() > 1e-2


@pytest.mark.parametrize("mean", [True, False])
def test_constant_mean_samples_hold_no_pattern_beyond_the_noise(mean: bool) -> None:
    # m(z) = a(z)·1: a draw's spread over the grid is the noise's alone, here s ≤ e^{-6.3}.
    shape = (2, 4, 5)
    models = {}
    for decoder_mean in ("constant", "field"):
        torch.manual_seed(0)
        model = VAE(shape, latent_dim=2, arch="mlp", hidden=(), decoder_mean=decoder_mean,
                    decoder_scale="spectral_global_dc").double()  # fmt: skip
        with torch.no_grad():
            model.decoder.net[0].weight.normal_()
            model.scale_net.net[0].weight.zero_()
            model.scale_net.net[0].bias.fill_(-20.0)  # log s = 7 tanh(-20/7) ≈ -6.9
            model.dc_log_scale.fill_(-20.0)
        models[decoder_mean] = model
    spread = {
        name: m.sample(64, mean=mean, generator=torch.Generator().manual_seed(4)).std((2, 3))
        for name, m in models.items()
    }
    bound = 0.0 if mean else 6 * math.exp(7 * math.tanh(-20 / 7))  # 6 noise sds
    assert spread["constant"].amax() <= bound + 1e-12
    assert spread["field"].amin() > 0.1  # control: the network's field has a pattern


def test_a_fresh_global_dc_scale_is_one() -> None:
    # r₀ = 0 at the start: s₀ = 1, the scale of a standardized field's level.
    model = VAE((2, 4, 5), latent_dim=2, decoder_scale="spectral_global_dc")
    assert torch.equal(model.dc_log_scale.detach(), torch.zeros(2))
    assert model.dc_log_scale.requires_grad


@pytest.mark.parametrize("shape", [(1, 6), (2, 4, 5)])
def test_constant_mean_is_the_homogeneous_law_with_independent_dct_coefficients(
    shape: tuple[int, ...],
) -> None:
    # m(z) = a(z)·1 per channel, a the grid mean of the network's output; with the spectral
    # scale, p(x|z) factorizes over DCT coefficients: N(a√N, s₀²) for each channel's DC term,
    # N(0, s_k²) for the rest (C(a·1) = a√N e₀).
    from scipy.fft import dctn

    model = _random_spectral(shape, "spectral_global_dc")
    constant = VAE(shape, latent_dim=2, arch="mlp", hidden=(), decoder_scale="spectral_global_dc",
                   decoder_mean="constant").double()  # fmt: skip
    constant.load_state_dict(model.state_dict())
    z = torch.randn(3, 2, dtype=torch.float64)
    x = torch.randn(3, *shape, dtype=torch.float64)
    grid_axes = tuple(range(2, len(shape) + 1))
    n = math.prod(shape[1:])
    with torch.no_grad():
        net = model.decode(z)  # the same network, its mean not averaged
        mean = constant.decode(z)
        logvar = constant._decoder_logvar(z, None).reshape(3, shape[0], n)
        got = constant.log_likelihood(x, mean, constant._decoder_logvar(z, None))
        control = model.log_likelihood(x, net, model._decoder_logvar(z, None))
    level = net.mean(grid_axes, keepdim=True)
    torch.testing.assert_close(mean, level.expand_as(net), rtol=1e-15, atol=0)
    coef = dctn(x.numpy(), type=2, axes=grid_axes, norm="ortho").reshape(3, shape[0], n)
    centre = np.zeros_like(coef)
    centre[:, :, 0] = level.reshape(3, shape[0]).numpy() * math.sqrt(n)
    var = logvar.exp().numpy()
    truth = -0.5 * (_LOG_2PI + np.log(var) + (coef - centre) ** 2 / var).sum((1, 2))
    torch.testing.assert_close(got, torch.as_tensor(truth), rtol=1e-12, atol=1e-9)
    assert (control - got).abs().min() > 1e-3  # control: the mean as the network's field


def test_constant_mean_needs_a_field_and_survives_the_config_round_trip() -> None:
    with pytest.raises(ValueError, match="decoder_mean must be"):
        VAE((1, 6), decoder_mean="level")
    with pytest.raises(ValueError, match=r"decoder_mean='constant' needs a \(C, \*grid\)"):
        VAE((6,), decoder_mean="constant")
    torch.manual_seed(0)
    model = VAE((1, 16), latent_dim=2, arch="conv", channels=(4, 8), pool="moments",
                decoder_mean="constant").double()  # fmt: skip
    again = VAE.from_config(model.config).double()
    again.load_state_dict(model.state_dict())
    z = torch.randn(3, 2, dtype=torch.float64)
    torch.testing.assert_close(again.decode(z), model.decode(z), rtol=0, atol=0)
    assert again.decoder_mean == "constant"


@pytest.mark.parametrize("decoder_scale", ["spectral", "spectral_global_dc"])
def test_spectral_scale_needs_a_field(decoder_scale: str) -> None:
    with pytest.raises(ValueError, match=rf"decoder_scale='{decoder_scale}' needs a \(C, \*grid\)"):
        VAE((6,), decoder_scale=decoder_scale)
    VAE((1, 6), decoder_scale=decoder_scale)  # control: a one-channel field is accepted


def test_tc_weight_adds_the_batch_total_correlation_to_the_loss() -> None:
    from physgen.models.total_correlation import kl_decomposition

    torch.manual_seed(0)
    x = torch.randn(12, 1, 8, dtype=torch.float64)
    plain = VAE((1, 8), latent_dim=3, hidden=(16,), beta=2.0).double()
    tc = VAE((1, 8), latent_dim=3, hidden=(16,), beta=2.0, tc_weight=5.0, dataset_size=100)
    tc = tc.double()
    tc.load_state_dict(plain.state_dict())
    torch.manual_seed(4)
    loss = tc.loss(x)
    torch.manual_seed(4)
    base = plain.loss(x)  # the same posterior draw: one randn_like of the code's shape
    torch.manual_seed(4)
    mu, logvar = plain.encode(x)
    z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
    expected = base + 5.0 * kl_decomposition(z, mu, logvar, 100).total_correlation
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-10)
    assert (loss - base).abs().max() > 1e-6  # control: the penalty is there
    with pytest.raises(ValueError, match="needs dataset_size"):
        VAE((4,), tc_weight=1.0)


@pytest.mark.parametrize("decoder_scale", ["spectral", "spectral_global_dc"])
def test_decoder_scale_and_tc_weight_survive_the_config_round_trip(decoder_scale: str) -> None:
    torch.manual_seed(0)
    model = VAE((1, 8), latent_dim=2, hidden=(8,), decoder_scale=decoder_scale, tc_weight=3.0,
                dataset_size=50).double()  # fmt: skip
    if model.dc_log_scale is not None:
        with torch.no_grad():
            model.dc_log_scale.fill_(-0.7)  # not the initial value: the state dict carries it
    again = VAE.from_config(model.config).double()
    again.load_state_dict(model.state_dict())
    assert (again.decoder_scale, again.tc_weight, again.dataset_size) == (decoder_scale, 3.0, 50)
    z = torch.randn(4, 2, dtype=torch.float64)
    torch.testing.assert_close(again.decode_std(z), model.decode_std(z), rtol=0, atol=0)


def test_mean_pooled_encoder_survives_the_config_round_trip_and_needs_conv() -> None:
    torch.manual_seed(0)
    model = VAE((1, 16), latent_dim=2, arch="conv", channels=(4, 8), pool="mean").double()
    again = VAE.from_config(model.config).double()
    again.load_state_dict(model.state_dict())
    assert again.encoder.pool == "mean"
    x = torch.randn(3, 1, 16, dtype=torch.float64)
    torch.testing.assert_close(again.encode(x)[0], model.encode(x)[0], rtol=0, atol=0)
    with pytest.raises(ValueError, match="needs arch='conv'"):
        VAE((16,), pool="mean")
