"""SSR's ``afr_window='protocol'``: the AFR window fitted on the searched gallery so that it keeps exhaustive
search's matches under the evaluation protocol (``fit_match_window``), with the validation camera ids."""

import numpy as np
import pytest

from jhash import config as config_lib
from jhash.methods import ssr
from jhash.search import attribute_first as afr
from jhash.search import pack_codes


def _config(**method):
    c = config_lib.base_config()
    c.model.bits = 64
    c.method = ssr.method_config(**method)
    return c


def _codes(seed):
    """48 images of 12 identities from 2 cameras: attribute codes per identity, ID codes 10 % bits flipped."""
    rng = np.random.default_rng(seed)
    pids = np.repeat(np.arange(12), 4)
    cams = np.tile([0, 0, 1, 1], 12)
    attr = np.where(rng.random((12, 8)) < 0.5, 1, -1)[pids].astype(np.int8)
    centers = rng.choice([-1, 1], size=(12, 64))
    ids = np.where(rng.random((48, 64)) < 0.1, -centers[pids], centers[pids]).astype(np.int8)
    return pids, cams, attr, ids


def test_protocol_window_is_the_match_fit_with_the_val_cameras():
    c = _config(afr_window="protocol", afr_prefix_bits=16, afr_match_target=0.9, afr_match_k=2, afr_confidence=0.0)
    pids, cams, attr, ids = _codes(2)
    params = ssr.fit_search({"id": ids, "attr": attr}, pids, c, camids=cams)
    assert params["window"] == "protocol" and params["fit_camids"] == cams.tolist()
    packed = {"id": np.asarray(pack_codes(ids)), "attr": np.asarray(pack_codes(attr))}
    first = ssr.first_codes(packed["attr"], packed["id"], c)
    g_first, g_id = first[::2], packed["id"][::2]
    w, info = ssr.search_window(g_first, g_id, params, c)
    fit = afr.fit_match_window(first, packed["id"], pids, cams, g_first, g_id, k=2, target=0.9)
    assert info["window"] == "protocol" and w == min(fit.w, 24) and info["val_kept"] == fit.kept
    found = ssr.search(packed, packed, params, c)
    w_all, _ = ssr.search_window(first, packed["id"], params, c)
    np.testing.assert_array_equal(np.asarray(found["distances"]),
                                  afr.attribute_first_distances(first, first, packed["id"], packed["id"], w_all))


def test_protocol_window_without_or_with_bad_camera_ids():
    c = _config(afr_window="protocol", afr_prefix_bits=16, afr_confidence=0.0)
    pids, cams, attr, ids = _codes(3)
    with pytest.warns(UserWarning, match="without camids"):
        params = ssr.fit_search({"id": ids, "attr": attr}, pids, c)
    assert "fit_camids" not in params
    packed = {"id": np.asarray(pack_codes(ids)), "attr": np.asarray(pack_codes(attr))}
    first = ssr.first_codes(packed["attr"], packed["id"], c)
    w, _ = ssr.search_window(first[::2], packed["id"][::2], params, c)  # every image its own camera
    own = afr.fit_match_window(first, packed["id"], pids, np.arange(48), first[::2], packed["id"][::2],
                               target=ssr.DEFAULTS["afr_match_target"])
    assert w == min(own.w, 24)
    with pytest.raises(ValueError, match="camids"):
        ssr.fit_search({"id": ids, "attr": attr}, pids, c, camids=cams[:5])


def test_protocol_window_falls_back_to_the_w_rule_without_cross_camera_matches():
    """Every validation identity seen by one camera: no match to keep, so the w rule's share, with a warning."""
    c = _config(afr_window="protocol", afr_prefix_bits=16)
    pids, _, attr, ids = _codes(4)
    params = ssr.fit_search({"id": ids, "attr": attr}, pids, c, camids=pids)
    packed = {"id": np.asarray(pack_codes(ids)), "attr": np.asarray(pack_codes(attr))}
    first = ssr.first_codes(packed["attr"], packed["id"], c)
    with pytest.warns(UserWarning, match="no true match"):
        w, info = ssr.search_window(first, packed["id"], params, c)
    assert info == {"window": "rule"} and w == ssr.window(params, c, 48)


def test_prefix_bits_scale_with_the_code_length():
    """None: 88 bits per 2048, rounded down to a multiple of 8 and of parts + 2 (8 for 6 stripes); nothing when
    that leaves no bits; an explicit value as given; none for the paper's rule."""
    auto = _config(afr_window="protocol")
    assert [ssr.prefix_bits(auto, n) for n in (2048, 1024, 512, 256, 128, 64)] == [88, 40, 16, 8, 0, 0]
    assert ssr.prefix_bits(_config(afr_window="protocol", parts=4), 2048) == 72  # multiples of lcm(8, 6) = 24
    assert ssr.prefix_bits(_config(afr_prefix_bits=24), 2048) == 24
    assert ssr.prefix_bits(_config(afr_window="rule", afr_prefix_bits=24), 2048) == 0
    pids, _, attr, ids = _codes(5)
    packed_attr = np.asarray(pack_codes(attr))
    np.testing.assert_array_equal(ssr.first_codes(packed_attr, np.asarray(pack_codes(ids)), auto), packed_attr)
