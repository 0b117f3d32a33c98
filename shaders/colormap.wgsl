// Maps a buffer of f32 values to packed RGBA8 colours (little-endian r, g, b, a = 255)
// through the piecewise-linear ramps of src/engine/render/colormap.rs, which is
// this shader's reference and test oracle.

struct Params {
    lo: f32,
    hi: f32,
    count: u32,
    map_id: u32,
};

@group(0) @binding(0) var<storage, read> values: array<f32>;
@group(0) @binding(1) var<storage, read_write> colors: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;

const VIRIDIS = array<vec3<f32>, 9>(
    vec3<f32>(68.0, 1.0, 84.0),
    vec3<f32>(71.0, 44.0, 122.0),
    vec3<f32>(59.0, 81.0, 139.0),
    vec3<f32>(44.0, 113.0, 142.0),
    vec3<f32>(33.0, 144.0, 141.0),
    vec3<f32>(39.0, 173.0, 129.0),
    vec3<f32>(92.0, 200.0, 99.0),
    vec3<f32>(170.0, 220.0, 50.0),
    vec3<f32>(253.0, 231.0, 37.0),
);

const DIVERGING = array<vec3<f32>, 5>(
    vec3<f32>(33.0, 102.0, 172.0),
    vec3<f32>(146.0, 197.0, 222.0),
    vec3<f32>(247.0, 247.0, 247.0),
    vec3<f32>(244.0, 165.0, 130.0),
    vec3<f32>(178.0, 24.0, 43.0),
);

fn ramp(u: f32, map_id: u32) -> vec3<f32> {
    var n: u32 = 9u;
    if (map_id == 1u) {
        n = 5u;
    }
    let x = clamp(u, 0.0, 1.0) * f32(n - 1u);
    let i = min(u32(floor(x)), n - 2u);
    let f = x - f32(i);
    var a: vec3<f32>;
    var b: vec3<f32>;
    if (map_id == 1u) {
        a = DIVERGING[i];
        b = DIVERGING[i + 1u];
    } else {
        a = VIRIDIS[i];
        b = VIRIDIS[i + 1u];
    }
    return clamp(floor(a * (1.0 - f) + b * f + vec3<f32>(0.5)), vec3<f32>(0.0), vec3<f32>(255.0));
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i >= params.count) {
        return;
    }
    let v = values[i];
    var rgb = vec3<f32>(128.0, 128.0, 128.0);
    // NaN is the only value not equal to itself
    if (v == v) {
        let span = params.hi - params.lo;
        var u = 0.5;
        if (span > 0.0) {
            u = (v - params.lo) / span;
        }
        rgb = ramp(u, params.map_id);
    }
    let c = vec3<u32>(rgb);
    colors[i] = c.x | (c.y << 8u) | (c.z << 16u) | (255u << 24u);
}
