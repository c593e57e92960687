//! Artifact size: the deployed zip and its unzipped `bootstrap`, against the Python `anthropic`
//! package zipped as a layer.

use super::*;

pub async fn artifact(bootstrap: &Path) -> Result<Section> {
    let mut s = Section::new("Artifact");
    let a = infra::artifact::Artifact::from_bootstrap(bootstrap)?;
    let unzipped = std::fs::metadata(bootstrap)
        .with_context(|| format!("reading {}", bootstrap.display()))?
        .len();
    let layer = python_layer().await?;
    let (py_files, py_unzipped) = dir_size(&layer.dir)?;
    // The layer does not change between runs: its zip size is kept next to it.
    let zip_size_file = layer.dir.with_file_name("zip-size");
    let py_zip = match std::fs::read_to_string(&zip_size_file)
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
    {
        Some(n) => n,
        None => {
            let n = zip_dir(&layer.dir)?;
            std::fs::write(&zip_size_file, n.to_string())
                .with_context(|| format!("writing {}", zip_size_file.display()))?;
            n
        }
    };
    s.method = format!(
        "The function's zip is what `cargo xtask package` deploys (`infra::artifact::Artifact`: \
         `bootstrap` alone, deflated, deterministic). The baseline is the Python SDK as a Lambda \
         layer: `pip install anthropic -t <dir>/python` ({version}, with its dependencies, {py_files} \
         files; cached under the target directory between runs), zipped with deflate.",
        version = layer.version
    );
    let zr = a.zip.len() as f64 / py_zip as f64;
    let ur = unzipped as f64 / py_unzipped as f64;
    s.figures.push(
        Figure::new("zip size", mb(a.zip.len() as u64))
            .baseline(format!("{} (anthropic layer zip)", mb(py_zip)))
            .ratio(format!("{zr:.2}"))
            .target("≤ 0.25 of the baseline", zr <= 0.25),
    );
    s.figures.push(
        Figure::new("unzipped size", mb(unzipped))
            .baseline(format!("{} (anthropic layer unzipped)", mb(py_unzipped)))
            .ratio(format!("{ur:.2}"))
            .target("≤ 0.25 of the baseline", ur <= 0.25),
    );
    if zr > 0.25 || ur > 0.25 {
        s.notes.push(format!(
            "Target missed for `{}`. What the binary carries that the Python layer does not: the \
             AWS SDK for Secrets Manager with its Smithy runtime, a TLS implementation (rustls \
             with the ring crypto provider) with compiled-in root certificates, hyper, tokio and the Lambda \
             runtime; a debug or unstripped build is larger still. The Python layer relies on the \
             runtime's interpreter and its OpenSSL, which are not counted in the baseline.",
            bootstrap.display()
        ));
    }
    Ok(s)
}

struct Layer {
    dir: PathBuf,
    version: String,
}

async fn python_layer() -> Result<Layer> {
    let root = crate::bench::bench_dir().await?.join("anthropic-layer");
    let dir = root.join("layer");
    let marker = root.join("complete");
    if !marker.is_file() {
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        let python = emulators::moto::venv_dir().join("bin/python");
        let out = tokio::process::Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "anthropic",
                "-t",
            ])
            .arg(dir.join("python"))
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("running {} -m pip", python.display()))?;
        if !out.status.success() {
            bail!(
                "`pip install anthropic -t ...` failed (it needs PyPI): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::fs::write(&marker, b"").with_context(|| format!("writing {}", marker.display()))?;
    }
    let version = std::fs::read_dir(dir.join("python"))
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .find(|n| n.starts_with("anthropic-") && n.ends_with(".dist-info"))
        .map(|n| n.trim_end_matches(".dist-info").replacen('-', " ", 1))
        .unwrap_or_else(|| "anthropic".into());
    Ok(Layer { dir, version })
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let ft = e.file_type()?;
        if ft.is_dir() {
            walk(&e.path(), out)?;
        } else if ft.is_file() {
            out.push(e.path());
        }
    }
    Ok(())
}

fn dir_size(dir: &Path) -> Result<(usize, u64)> {
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    let mut total = 0;
    for f in &files {
        total += std::fs::metadata(f)?.len();
    }
    Ok((files.len(), total))
}

fn zip_dir(dir: &Path) -> Result<u64> {
    use std::io::Write;
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    files.sort();
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for f in files {
        let name = f
            .strip_prefix(dir)
            .unwrap_or(&f)
            .to_string_lossy()
            .to_string();
        w.start_file(name, opts)?;
        w.write_all(&std::fs::read(&f)?)?;
    }
    let out = w.finish().context("zipping the layer")?;
    Ok(out.into_inner().len() as u64)
}
