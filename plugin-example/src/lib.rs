//! An example fence driver plugin: the `fence.driver.v1.FenceDriver`
//! contract served over a directory of outlet files (`DIR/<port>.state`
//! holds `on` or `off`). A vendor's plugin has the same shape with a real
//! device client behind it, kept warm per device name.
//!
//! Parameters: `dir` (required). Secret: `token`, checked when `DIR/token`
//! exists. Fault injection, for tests of the arbiter: a file `DIR/hang`
//! makes `off` and `status` never answer, `DIR/crash` makes `off` exit the
//! process, `DIR/lie` makes `off` answer success and change nothing.

use std::path::PathBuf;

use proto::driver as pb;
use proto::driver::fence_driver_server::FenceDriver;
use tonic::{Request, Response, Status};

#[derive(Debug, Default, Clone)]
pub struct FilePlugin;

fn param(name: &str, required: bool, secret: bool, description: &str) -> pb::DriverParameter {
    pb::DriverParameter {
        name: name.into(),
        required,
        secret,
        description: description.into(),
    }
}

/// The device's directory, after checking its token.
fn device_dir(r: &pb::DeviceRequest) -> Result<PathBuf, Status> {
    let d = r
        .device
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("no device in the request"))?;
    let dir = d
        .params
        .get("dir")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Status::invalid_argument("parameter `dir` is required"))?;
    let dir = PathBuf::from(dir);
    if !dir.is_dir() {
        return Err(Status::unavailable(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    if let Ok(want) = std::fs::read_to_string(dir.join("token"))
        && d.secrets.get("token").map(String::as_str) != Some(want.trim())
    {
        return Err(Status::unauthenticated("token refused"));
    }
    Ok(dir)
}

fn outlet(dir: &std::path::Path, port: &str) -> Result<PathBuf, Status> {
    if port.is_empty() || port.contains('/') || port.starts_with('.') {
        return Err(Status::not_found(format!("no outlet {port:?}")));
    }
    let f = dir.join(format!("{port}.state"));
    if f.is_file() {
        Ok(f)
    } else {
        Err(Status::not_found(format!("no outlet {port:?}")))
    }
}

fn read_state(f: &std::path::Path) -> Result<pb::PowerState, Status> {
    let s = std::fs::read_to_string(f).map_err(|e| Status::internal(e.to_string()))?;
    Ok(match s.trim() {
        "on" => pb::PowerState::On,
        "off" => pb::PowerState::Off,
        _ => pb::PowerState::Unknown,
    })
}

async fn faults(dir: &std::path::Path) {
    if dir.join("hang").exists() {
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    }
}

fn write(f: &std::path::Path, state: &str) -> Result<Response<pb::ActionReply>, Status> {
    std::fs::write(f, format!("{state}\n")).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(pb::ActionReply {}))
}

#[tonic::async_trait]
impl FenceDriver for FilePlugin {
    async fn metadata(
        &self,
        _: Request<pb::MetadataRequest>,
    ) -> Result<Response<pb::DriverMetadata>, Status> {
        Ok(Response::new(pb::DriverMetadata {
            name: "example-files".into(),
            description: "Outlets are files DIR/<port>.state holding on or off".into(),
            parameters: vec![
                param("dir", true, false, "directory of the outlet files"),
                param("token", false, true, "checked when DIR/token exists"),
            ],
            confirms_power_state: true,
        }))
    }

    async fn validate(
        &self,
        r: Request<pb::DeviceRequest>,
    ) -> Result<Response<pb::ValidateReply>, Status> {
        let r = r.into_inner();
        let mut problems = Vec::new();
        if let Some(d) = &r.device {
            match d.params.get("dir") {
                None => problems.push(pb::ParameterProblem {
                    key: "dir".into(),
                    reason: "required".into(),
                }),
                Some(dir) if !std::path::Path::new(dir).is_dir() => {
                    problems.push(pb::ParameterProblem {
                        key: "dir".into(),
                        reason: format!("{dir} is not a directory"),
                    })
                }
                Some(_) => {}
            }
            for k in d.params.keys().filter(|k| k.as_str() != "dir") {
                problems.push(pb::ParameterProblem {
                    key: k.clone(),
                    reason: "unknown parameter; this plugin takes dir and the secret token".into(),
                });
            }
        }
        Ok(Response::new(pb::ValidateReply { problems }))
    }

    async fn status(
        &self,
        r: Request<pb::DeviceRequest>,
    ) -> Result<Response<pb::StatusReply>, Status> {
        let r = r.into_inner();
        let dir = device_dir(&r)?;
        faults(&dir).await;
        let state = read_state(&outlet(&dir, &r.port)?)?;
        Ok(Response::new(pb::StatusReply {
            state: state as i32,
        }))
    }

    async fn on(&self, r: Request<pb::DeviceRequest>) -> Result<Response<pb::ActionReply>, Status> {
        let r = r.into_inner();
        let dir = device_dir(&r)?;
        write(&outlet(&dir, &r.port)?, "on")
    }

    async fn off(
        &self,
        r: Request<pb::DeviceRequest>,
    ) -> Result<Response<pb::ActionReply>, Status> {
        let r = r.into_inner();
        let dir = device_dir(&r)?;
        faults(&dir).await;
        let f = outlet(&dir, &r.port)?;
        if dir.join("crash").exists() {
            std::process::exit(70);
        }
        if dir.join("lie").exists() {
            return Ok(Response::new(pb::ActionReply {}));
        }
        write(&f, "off")
    }

    async fn reboot(
        &self,
        r: Request<pb::DeviceRequest>,
    ) -> Result<Response<pb::ActionReply>, Status> {
        let r = r.into_inner();
        let dir = device_dir(&r)?;
        let f = outlet(&dir, &r.port)?;
        write(&f, "off")?;
        write(&f, "on")
    }

    async fn list(&self, r: Request<pb::DeviceRequest>) -> Result<Response<pb::ListReply>, Status> {
        let dir = device_dir(&r.into_inner())?;
        let mut ports = Vec::new();
        let entries = std::fs::read_dir(&dir).map_err(|e| Status::internal(e.to_string()))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".state") {
                ports.push(pb::PortEntry {
                    id: id.to_string(),
                    state: read_state(&e.path())? as i32,
                });
            }
        }
        ports.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Response::new(pb::ListReply { ports }))
    }

    async fn monitor(
        &self,
        r: Request<pb::DeviceRequest>,
    ) -> Result<Response<pb::ActionReply>, Status> {
        device_dir(&r.into_inner())?;
        Ok(Response::new(pb::ActionReply {}))
    }
}
