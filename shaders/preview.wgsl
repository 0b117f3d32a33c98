// Sampled images, straight from the sampler's tensor buffer into the texture
// the window draws: n images [c, h, w] in [-1, 1] (clamped) laid out in `cols`
// columns with `gap`-pixel gaps on a gray-40 ground, grayscale for one
// channel, RGB for three. One invocation per texture pixel. The reference is
// `grid_picture` in src/app/preview.rs (same layout, same rounding).

struct Params {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    cols: u32,
    gap: u32,
    // index of the first value in `values` (the tensor may start inside the binding)
    first: u32,
    _pad: u32,
};

@group(0) @binding(0) var<storage, read> values: array<f32>;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var picture: texture_storage_2d<rgba8unorm, write>;

// The byte the reference writes for a value: (clamp(v) + 1) * 127.5 rounded
// half away from zero, as Rust's `round` does (WGSL's `round` goes to even).
fn level(v: f32) -> f32 {
    let x = (clamp(v, -1.0, 1.0) + 1.0) * 127.5;
    let f = floor(x);
    let b = select(f, f + 1.0, x - f >= 0.5);
    return b / 255.0;
}

@compute @workgroup_size(8, 8)
fn cs_grid(@builtin(global_invocation_id) id: vec3<u32>) {
    let size = textureDimensions(picture);
    if (id.x >= size.x || id.y >= size.y) {
        return;
    }
    let p = params;
    let ground = vec4<f32>(40.0 / 255.0, 40.0 / 255.0, 40.0 / 255.0, 1.0);
    var colour = ground;
    if (id.x >= p.gap && id.y >= p.gap) {
        let cx = (id.x - p.gap) / (p.w + p.gap);
        let cy = (id.y - p.gap) / (p.h + p.gap);
        let x = (id.x - p.gap) % (p.w + p.gap);
        let y = (id.y - p.gap) % (p.h + p.gap);
        let k = cy * p.cols + cx;
        if (x < p.w && y < p.h && cx < p.cols && k < p.n) {
            let plane = p.h * p.w;
            let at = p.first + k * p.c * plane + y * p.w + x;
            if (p.c == 1u) {
                let g = level(values[at]);
                colour = vec4<f32>(g, g, g, 1.0);
            } else {
                colour = vec4<f32>(
                    level(values[at]),
                    level(values[at + plane]),
                    level(values[at + 2u * plane]),
                    1.0,
                );
            }
        }
    }
    textureStore(picture, vec2<i32>(id.xy), colour);
}
