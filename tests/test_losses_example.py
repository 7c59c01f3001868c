"""The README's "losses as a library" example, run as a test (keep the two in sync)."""


def test_readme_losses_example():
    # --- README example starts here -------------------------------------------------------------
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from jhash import losses

    class Hasher(nn.Module):  # any Flax model: features -> 32 relaxed bits + class logits
        @nn.compact
        def __call__(self, x):
            h = nn.relu(nn.Dense(64)(x))
            u = jnp.tanh(nn.Dense(32)(h))
            return u, nn.Dense(10)(u)

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(10, 20)).astype(np.float32)
    labels = np.repeat(np.arange(10), 8).astype(np.int32)  # a P×K batch: 10 classes × 8 samples
    x = centers[labels] + 0.5 * rng.normal(size=(80, 20)).astype(np.float32)

    model = Hasher()
    params = model.init(jax.random.PRNGKey(0), x)
    tx = optax.adam(1e-2)
    opt_state = tx.init(params)

    def loss_fn(params, x, y):
        u, logits = model.apply(params, x)
        return (losses.softmax_cross_entropy(logits, y, label_smoothing=0.1)
                + losses.batch_hard_triplet_loss(u / jnp.sqrt(32.0), y, margin=0.3)
                + 0.1 * losses.quantization_loss(u, jnp.sign(u)) / 32)

    @jax.jit
    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    for i in range(150):
        params, opt_state, loss = step(params, opt_state, x, labels)

    codes = np.asarray(jnp.sign(model.apply(params, x)[0]))  # ±1 binary codes
    hamming = (32 - codes @ codes.T) / 2
    np.fill_diagonal(hamming, np.inf)
    print(f"loss {float(loss):.3f}, nearest-neighbour accuracy {np.mean(labels[hamming.argmin(1)] == labels):.2f}")
    # --- README example ends here ---------------------------------------------------------------
    assert np.isfinite(float(loss))
    assert float(loss) < float(loss_fn(model.init(jax.random.PRNGKey(0), x), x, labels))
    assert np.mean(labels[hamming.argmin(1)] == labels) > 0.9
