use otwrap::prelude::*;
use otwrap::Model;

/// Every ssh option, written as a user would.
#[parallelize(
    backend = "ssh",
    hosts = ["4/alice@node1", "node2:2222"],
    key = "~/.ssh/id_ed25519",
    known_hosts = "/etc/ssh/ssh_known_hosts",
    host_key_check = "accept-new",
    connect_timeout = 5,
    retries = 0,
    remote_dir = ".cache/otwrap"
)]
fn on_hosts(x: f64) -> f64 {
    x
}

/// Every slurm option.
#[parallelize(
    backend = "slurm",
    partition = "debug",
    account = "uq",
    qos = "normal",
    time = 30,
    cpus_per_task = 2,
    mem = "2G",
    wckey = "campaign",
    constraint = "haswell",
    job_name = "beam",
    log_dir = "logs",
    run_dir = "runs",
    array_parallelism = 50,
    points_per_task = 10,
    start_timeout = 600,
    setup = ["module load openturns", "export OMP_NUM_THREADS=1"],
    sbatch = ["--exclusive"],
    retry_model_failures = true,
    dry_run = false
)]
fn on_slurm(x: f64) -> f64 {
    x
}

fn main() {
    let o = on_hosts::Model::attribute_options();
    assert!(o.invalid.is_empty(), "{:?}", o.invalid);
    let hosts = o.ssh.hosts.expect("hosts");
    assert_eq!((hosts[0].slots, hosts[1].port), (4, 2222));
    assert_eq!(o.retries, Some(0));
    let o = on_slurm::Model::attribute_options();
    assert!(o.invalid.is_empty(), "{:?}", o.invalid);
    assert_eq!(o.slurm.partition.as_deref(), Some("debug"));
    assert_eq!(o.slurm.time.as_deref(), Some("30"));
    assert_eq!(o.slurm.setup.map(|s| s.len()), Some(2));
}
