//! What `airlock diff` calls out and `airlock merge` refuses: one rule set, applied in the same
//! way to the files of the session's upper layer and to the files of the agent's commits (DESIGN
//! guarantee 8: no host process acts on what the sandbox wrote without the user seeing it).
//!
//! Three kinds of concern, each with its own escape hatch on `airlock merge`:
//! - [`Concern::Exec`]: a file some host tool runs or reads as configuration without being asked
//!   (git, direnv, editors, package managers, language runtimes, CI); the table [`EXEC_RULES`],
//!   nested git directories and their lookalikes ([`is_dotgit`]), directories laid out as a
//!   git directory ([`git_shaped`]), and the directory the repository's `core.hooksPath` names
//!   ([`hooks_dir`]). `--allow-exec-files`.
//! - [`Concern::OutsideLink`]: a symbolic link whose target leaves the workspace ([`link_escapes`]).
//!   `--allow-outside-links`.
//! - [`Concern::Unshown`]: a file `diff` cannot show in full (binary, over [`MAX_SHOWN_BYTES`],
//!   not UTF-8; [`classify`]). `--allow-unshown-files`.
//!
//! Build files (`Makefile`, `package.json` scripts, `build.rs`, `setup.py`, ...) are not in the
//! table: they run when the user builds, which is the point of reviewing them in the diff; the
//! rules cover what runs without the user asking (opening a directory or an editor, the next
//! `git`, `cargo`, `npm` or `python` command for any purpose, a push).

use std::path::{Component, Path, PathBuf};

/// The largest file `diff` shows in full, in bytes (4 MiB).
pub const MAX_SHOWN_BYTES: u64 = 4 << 20;

/// Where in the workspace a rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// Only at the workspace root (the tool reads it only there: CI configuration).
    Root,
    /// In any directory (the tool reads it in every directory, or in the one it is started in).
    AnyDepth,
}

/// How a rule matches a path, on components normalised by [`normalise`].
#[derive(Debug, Clone, Copy)]
pub enum Pat {
    /// The path's last component has this name.
    Name(&'static str),
    /// The last component ends with this suffix.
    Suffix(&'static str),
    /// Anything in (or the entry itself named) this directory.
    Dir(&'static str),
    /// Anything below the directory `A/B` (or `A` itself replaced, e.g. by a link).
    Under(&'static str, &'static str),
    /// Anything in the directory `A/B` or `A/B` itself, but not `A` alone (a file or directory
    /// named `A` is ordinary: `gradle`, `.clinerules` as a rules file).
    Below(&'static str, &'static str),
    /// A file directly in a directory named `A` whose name is one of `B` (any name when empty),
    /// or `A` itself.
    In(&'static str, &'static [&'static str]),
}

/// One entry of the exec-file table: what matches, where, and why it runs on the host.
#[derive(Debug, Clone, Copy)]
pub struct ExecRule {
    pub pat: Pat,
    pub at: At,
    pub why: &'static str,
}

const fn rule(pat: Pat, at: At, why: &'static str) -> ExecRule {
    ExecRule { pat, at, why }
}

use At::{AnyDepth, Root};
use Pat::{Below, Dir, In, Name, Suffix, Under};

const VENV_ACTIVATE: &[&str] = &[
    "activate",
    "activate.sh",
    "activate.bash",
    "activate.fish",
    "activate.csh",
    "activate.nu",
    "activate.ps1",
    "activate.bat",
    "activate_this.py",
];

/// Files that execute on the host (or configure a tool to run a program) without the user asking
/// for them by name. Names are matched after [`normalise`] (lower case; the spellings git itself
/// treats as equal on HFS+ and NTFS). The source of each entry is the tool's documentation.
pub const EXEC_RULES: &[ExecRule] = &[
    // git (gitattributes(5), gitmodules(5)): per-directory attributes name filter and diff drivers.
    rule(Name(".gitattributes"), AnyDepth, "git attributes select filters and diff drivers that run programs"),
    rule(Name(".gitmodules"), AnyDepth, "submodule URLs and update commands are followed by git on the host"),
    rule(Dir(".githooks"), AnyDepth, "a hooks directory (core.hooksPath) runs at the next git command"),
    rule(Dir(".husky"), AnyDepth, "husky hooks run at the next git commit"),
    rule(Name(".pre-commit-config.yaml"), AnyDepth, "pre-commit runs its hooks (local `entry:` commands) at the next git commit"),
    rule(Name("lefthook.yml"), AnyDepth, "lefthook runs its commands at the next git commit"),
    rule(Name(".lefthook.yml"), AnyDepth, "lefthook runs its commands at the next git commit"),
    rule(Name("lefthook-local.yml"), AnyDepth, "lefthook runs its commands at the next git commit"),
    // Other version control systems' repositories: hooks in their config.
    rule(Dir(".hg"), AnyDepth, "a Mercurial repository: hooks in .hg/hgrc run at the next hg command"),
    rule(Dir(".jj"), AnyDepth, "a Jujutsu repository: its config runs programs at the next jj command"),
    // direnv (direnv(1)), shells.
    rule(Name(".envrc"), AnyDepth, "direnv runs it when you enter the directory"),
    rule(Name(".env"), AnyDepth, "direnv (dotenv) and mise load it when you enter the directory"),
    rule(Name(".env.local"), AnyDepth, "direnv (dotenv) and mise load it when you enter the directory"),
    rule(Name(".bashrc"), AnyDepth, "shell start-up files run in every new shell"),
    rule(Name(".bash_profile"), AnyDepth, "shell start-up files run in every new shell"),
    rule(Name(".bash_login"), AnyDepth, "shell start-up files run in every new shell"),
    rule(Name(".profile"), AnyDepth, "shell start-up files run in every new shell"),
    rule(Name(".zshrc"), AnyDepth, "shell start-up files run in every new shell"),
    rule(Name(".zprofile"), AnyDepth, "shell start-up files run in every new shell"),
    rule(Name(".zshenv"), AnyDepth, "shell start-up files run in every new shell"),
    rule(Name(".zlogin"), AnyDepth, "shell start-up files run in every new shell"),
    rule(Name(".inputrc"), AnyDepth, "shell start-up files run in every new shell"),
    // Tool-version managers (mise, asdf): hooks, env and tool paths on cd.
    rule(Name("mise.toml"), AnyDepth, "mise runs its hooks and sets its env when you enter the directory"),
    rule(Name(".mise.toml"), AnyDepth, "mise runs its hooks and sets its env when you enter the directory"),
    rule(Name("mise.local.toml"), AnyDepth, "mise runs its hooks and sets its env when you enter the directory"),
    rule(Name(".mise.local.toml"), AnyDepth, "mise runs its hooks and sets its env when you enter the directory"),
    rule(Dir(".mise"), AnyDepth, "mise runs its hooks and sets its env when you enter the directory"),
    rule(Under(".config", "mise"), AnyDepth, "mise runs its hooks and sets its env when you enter the directory"),
    rule(Name(".tool-versions"), AnyDepth, "asdf and mise pick (and install) tools from it on cd"),
    rule(Name(".rtx.toml"), AnyDepth, "rtx/mise runs its hooks when you enter the directory"),
    // Rust (cargo-config(5) reads .cargo/config.toml in every ancestor; rustup overrides).
    rule(In(".cargo", &["config", "config.toml"]), AnyDepth, "cargo runs rustc-wrapper, runners and aliases from it (editors run cargo on open)"),
    rule(Name("rust-toolchain"), AnyDepth, "rustup runs the toolchain it names (a `path` toolchain is any binary) for every cargo call"),
    rule(Name("rust-toolchain.toml"), AnyDepth, "rustup runs the toolchain it names (a `path` toolchain is any binary) for every cargo call"),
    // JavaScript package managers.
    rule(Name(".npmrc"), AnyDepth, "npm runs node-options, script-shell and git from it for every npm command"),
    rule(Name(".yarnrc"), AnyDepth, "yarn runs yarn-path from it for every yarn command"),
    rule(Name(".yarnrc.yml"), AnyDepth, "yarn runs yarnPath and plugins from it for every yarn command"),
    rule(Under(".yarn", "releases"), AnyDepth, "yarn runs the release yarnPath names for every yarn command"),
    rule(Under(".yarn", "plugins"), AnyDepth, "yarn loads its plugins for every yarn command"),
    rule(Name(".pnpmfile.cjs"), AnyDepth, "pnpm runs it for every install"),
    rule(Name(".pnpmfile.mjs"), AnyDepth, "pnpm runs it for every install"),
    rule(Under("node_modules", ".bin"), AnyDepth, "npm shims run at `npx` and in every package script"),
    // Python: site runs .pth lines and sitecustomize at every interpreter start; venv scripts.
    rule(Suffix(".pth"), AnyDepth, "python runs `import` lines of .pth files at every start"),
    rule(Name("sitecustomize.py"), AnyDepth, "python imports it at every start"),
    rule(Name("usercustomize.py"), AnyDepth, "python imports it at every start"),
    rule(Suffix(".pyc"), AnyDepth, "python imports compiled bytecode instead of its source"),
    rule(Suffix(".pyo"), AnyDepth, "python imports compiled bytecode instead of its source"),
    rule(Name("pyvenv.cfg"), AnyDepth, "it names the interpreter a virtual environment runs"),
    rule(In("bin", VENV_ACTIVATE), AnyDepth, "virtual-environment activation scripts run in your shell"),
    rule(In("scripts", VENV_ACTIVATE), AnyDepth, "virtual-environment activation scripts run in your shell"),
    rule(Under(".venv", "bin"), AnyDepth, "a virtual environment's programs run instead of the system's"),
    rule(Under("venv", "bin"), AnyDepth, "a virtual environment's programs run instead of the system's"),
    // Editors and IDEs.
    rule(Dir(".vscode"), AnyDepth, "VS Code runs tasks, settings, launch configurations and MCP servers from it"),
    rule(Suffix(".code-workspace"), AnyDepth, "VS Code runs tasks and settings from a workspace file"),
    rule(Dir(".idea"), AnyDepth, "JetBrains IDEs run configurations from it"),
    rule(Dir(".devcontainer"), AnyDepth, "dev containers run its lifecycle commands on the host"),
    rule(Name(".devcontainer.json"), AnyDepth, "dev containers run its lifecycle commands on the host"),
    rule(Name(".nvim.lua"), AnyDepth, "Neovim runs it (exrc) when opened in the directory"),
    rule(Name(".nvimrc"), AnyDepth, "Neovim runs it (exrc) when opened in the directory"),
    rule(Name(".exrc"), AnyDepth, "vi and Neovim run it (exrc) when opened in the directory"),
    // Vim's 'exrc' (vim `:help 'exrc'`): the current directory's .vimrc, _vimrc, .exrc, _exrc,
    // and gvim's .gvimrc, _gvimrc.
    rule(Name(".vimrc"), AnyDepth, "Vim runs it (exrc) when opened in the directory"),
    rule(Name("_vimrc"), AnyDepth, "Vim runs it (exrc) when opened in the directory"),
    rule(Name("_exrc"), AnyDepth, "vi and Vim run it (exrc) when opened in the directory"),
    rule(Name(".gvimrc"), AnyDepth, "gVim runs it (exrc) when opened in the directory"),
    rule(Name("_gvimrc"), AnyDepth, "gVim runs it (exrc) when opened in the directory"),
    // Emacs (info "(emacs) Directory Variables"): `eval:` forms and mode hooks, once a value was
    // marked safe.
    rule(Name(".dir-locals.el"), AnyDepth, "Emacs evaluates its eval: forms when a file in the directory is opened"),
    rule(Name(".dir-locals-2.el"), AnyDepth, "Emacs evaluates its eval: forms when a file in the directory is opened"),
    // Zed (zed.dev/docs/configuring-zed, /tasks, /languages): `.zed/settings.json` names
    // language-server binaries (`lsp.*.binary.path`) and context servers, `.zed/tasks.json` tasks.
    rule(Dir(".zed"), AnyDepth, "Zed starts the language servers and context (MCP) servers its settings name"),
    // Helix (docs.helix-editor.com/languages.html): `.helix/languages.toml` names the
    // `[language-server.*] command` it starts for the workspace, `.helix/config.toml` editor config.
    rule(Dir(".helix"), AnyDepth, "Helix starts the language servers its languages.toml names"),
    // Theia and JetBrains Fleet: workspace tasks and run configurations.
    rule(Dir(".theia"), AnyDepth, "Theia runs tasks and launch configurations from it"),
    rule(Dir(".fleet"), AnyDepth, "JetBrains Fleet runs its run configurations and settings from it"),
    // Coding agents' project settings (hooks, MCP server commands).
    rule(Dir(".claude"), AnyDepth, "Claude Code runs hooks, commands and MCP servers from it"),
    rule(Name(".mcp.json"), AnyDepth, "coding agents start the MCP servers it names"),
    rule(Dir(".cursor"), AnyDepth, "Cursor runs MCP servers and rules from it"),
    rule(Dir(".gemini"), AnyDepth, "Gemini CLI runs MCP servers and tools from it"),
    // Each of these agents reads a project file that names MCP server commands (or URLs it
    // connects to), hooks or plugins, and starts them when opened in the repository.
    // opencode (opencode.ai/docs/config, /mcp-servers, /plugins): opencode.json(c) at the
    // root, or in .opencode/ with agents, commands and JS plugins.
    rule(Name("opencode.json"), AnyDepth, "opencode starts the MCP servers (mcp.*.command) and plugins it names"),
    rule(Name("opencode.jsonc"), AnyDepth, "opencode starts the MCP servers (mcp.*.command) and plugins it names"),
    rule(Dir(".opencode"), AnyDepth, "opencode starts the MCP servers and loads the plugins in it"),
    // Amazon Q Developer (docs.aws.amazon.com/amazonq, "MCP configuration"): .amazonq/mcp.json
    // is the workspace's MCP file; .amazonq/cli-agents hold agents with hooks.
    rule(Dir(".amazonq"), AnyDepth, "Amazon Q starts the MCP servers and runs the agent hooks in it"),
    // Kiro (kiro.dev/docs/mcp, /hooks): .kiro/settings/mcp.json, agent hooks in .kiro/hooks.
    rule(Dir(".kiro"), AnyDepth, "Kiro starts the MCP servers (settings/mcp.json) and runs the hooks in it"),
    // Roo Code (docs.roocode.com, "Using MCP in Roo": project-level .roo/mcp.json).
    rule(Dir(".roo"), AnyDepth, "Roo Code starts the MCP servers its mcp.json names"),
    // Kilo Code (a Roo fork): .kilocode/mcp.json.
    rule(Dir(".kilocode"), AnyDepth, "Kilo Code starts the MCP servers its mcp.json names"),
    // Cline (docs.cline.bot/customization/hooks, /getting-started/config): hooks are executables
    // in .clinerules/hooks/; project configuration (hooks, plugins) in .cline/.
    rule(Below(".clinerules", "hooks"), AnyDepth, "Cline runs the hook scripts in it"),
    rule(Dir(".cline"), AnyDepth, "Cline runs the hooks and plugins in it"),
    // Continue (docs.continue.dev, config.yaml `mcpServers`, .continue/mcpServers/*.yaml).
    rule(Dir(".continue"), AnyDepth, "Continue starts the MCP servers its config names"),
    // Codex CLI (developers.openai.com/codex/mcp): [mcp_servers.*] command in a trusted
    // project's .codex/config.toml.
    rule(Dir(".codex"), AnyDepth, "Codex starts the MCP servers ([mcp_servers.*] command) its config.toml names"),
    // Windsurf (docs.windsurf.com/windsurf/cascade/hooks): workspace .windsurf/hooks.json runs
    // shell commands around Cascade's actions.
    rule(Dir(".windsurf"), AnyDepth, "Windsurf runs the Cascade hooks (hooks.json) and workflows in it"),
    // Crush (charm.land: crush.json / .crush.json, `lsp.*.command`, `mcp.*.command`).
    rule(Name("crush.json"), AnyDepth, "Crush starts the language servers and MCP servers it names"),
    rule(Name(".crush.json"), AnyDepth, "Crush starts the language servers and MCP servers it names"),
    // Qwen Code (a Gemini CLI fork: .qwen/settings.json `mcpServers`), JetBrains Junie
    // (.junie/mcp/mcp.json).
    rule(Dir(".qwen"), AnyDepth, "Qwen Code starts the MCP servers its settings name"),
    rule(Dir(".junie"), AnyDepth, "Junie starts the MCP servers its mcp.json names"),
    // aider (aider.chat/docs/config/aider_conf.html): .aider.conf.yml in the git root or the
    // current directory; `lint-cmd` / `test-cmd` run after each edit (`auto-lint` is on).
    rule(Name(".aider.conf.yml"), AnyDepth, "aider runs its lint-cmd and test-cmd after every edit"),
    // git-lfs (git-lfs-config(5)): .lfsconfig sets lfs.url, where every LFS object of the
    // repository is fetched from and pushed to.
    rule(Name(".lfsconfig"), AnyDepth, "git-lfs sends and fetches the repository's LFS objects to the lfs.url it names"),
    // Java build wrappers an IDE runs on import (gradle/wrapper: distributionUrl and the
    // wrapper jar; .mvn: extensions.xml loads plugins, jvm.config, the maven wrapper).
    rule(Below("gradle", "wrapper"), AnyDepth, "gradlew runs the wrapper jar and the distribution it names (IDEs run it on import)"),
    rule(Dir(".mvn"), AnyDepth, "Maven loads its extensions and wrapper from it (IDEs run it on import)"),
    // sbt's launcher reads JVM options (`-javaagent:`) from .sbtopts and .jvmopts for every sbt
    // command (sbt(1), "sbt runner").
    rule(Name(".sbtopts"), AnyDepth, "sbt passes its JVM options (a -javaagent runs any jar) to every sbt command"),
    rule(Name(".jvmopts"), AnyDepth, "sbt passes its JVM options (a -javaagent runs any jar) to every sbt command"),
    // Bazel reads the workspace .bazelrc for every command (`startup --server_javabase`,
    // `--workspace_status_command`; IDE plugins run `bazel info` on open); bazelisk downloads
    // and runs the version .bazelversion names (`fork/version` from any GitHub fork) from the
    // base URL .bazeliskrc names (bazel.build/run/bazelrc, github.com/bazelbuild/bazelisk).
    rule(Name(".bazelrc"), AnyDepth, "Bazel runs the programs its options name (server_javabase, workspace_status_command) for every command"),
    rule(Name(".bazelversion"), AnyDepth, "bazelisk downloads and runs the Bazel it names (any GitHub fork) for every bazel command"),
    rule(Name(".bazeliskrc"), AnyDepth, "bazelisk downloads and runs Bazel from the URL it names for every bazel command"),
    // Bun (bun.sh/docs/runtime/bunfig): `preload` scripts run before every `bun` run and test.
    rule(Name("bunfig.toml"), AnyDepth, "bun runs its preload scripts for every bun command"),
    rule(Name(".bunfig.toml"), AnyDepth, "bun runs its preload scripts for every bun command"),
    // REPLs and debuggers that read a start-up file from the current directory: IRB and Pry
    // (./.irbrc, ./.pryrc), GHCi (./.ghci, ghc user guide "The .ghci files"), pdb (./.pdbrc).
    rule(Name(".irbrc"), AnyDepth, "irb runs it when started in the directory"),
    rule(Name(".pryrc"), AnyDepth, "pry runs it when started in the directory"),
    rule(Name(".ghci"), AnyDepth, "ghci runs its commands (:! runs a shell) when started in the directory"),
    rule(Name(".pdbrc"), AnyDepth, "pdb runs its commands when a debugger starts in the directory"),
    // CI: runs with the repository's secrets at the next push.
    rule(Under(".github", "workflows"), Root, "CI workflows run with the repository's secrets at the next push"),
    rule(Under(".github", "actions"), Root, "local GitHub actions run in CI with the repository's secrets"),
    rule(Name(".gitlab-ci.yml"), Root, "CI pipelines run with the repository's secrets at the next push"),
    rule(Dir(".gitlab"), Root, "CI templates run with the repository's secrets at the next push"),
    rule(Dir(".circleci"), Root, "CI pipelines run with the repository's secrets at the next push"),
    rule(Dir(".buildkite"), Root, "CI pipelines run with the repository's secrets at the next push"),
    rule(Name(".travis.yml"), Root, "CI pipelines run with the repository's secrets at the next push"),
    rule(Name("azure-pipelines.yml"), Root, "CI pipelines run with the repository's secrets at the next push"),
    rule(Name("bitbucket-pipelines.yml"), Root, "CI pipelines run with the repository's secrets at the next push"),
    rule(Name("jenkinsfile"), Root, "CI pipelines run with the repository's secrets at the next push"),
];

/// Files a coding agent reads as its instructions when it is started in the repository (on the
/// host, unsandboxed, if the user starts it there): text, so `merge` lands them, but `diff`
/// notes each ([`note_reason`]). AGENTS.md (agents.md: Codex, opencode, Cursor, Zed, Jules, ...,
/// the nearest one in the tree), CLAUDE.md (Claude Code memory, read in every directory up and
/// down), GEMINI.md (Gemini CLI context files), QWEN.md, GitHub Copilot's repository
/// instructions, Cursor's, Windsurf's and Cline's rules, goose's hints.
pub const AGENT_INSTRUCTIONS: &[ExecRule] = &[
    rule(
        Name("agents.md"),
        AnyDepth,
        "instructions a coding agent started here reads and follows",
    ),
    rule(
        Name("agents.override.md"),
        AnyDepth,
        "instructions a coding agent started here reads and follows",
    ),
    rule(
        Name("claude.md"),
        AnyDepth,
        "instructions Claude Code reads and follows",
    ),
    rule(
        Name("claude.local.md"),
        AnyDepth,
        "instructions Claude Code reads and follows",
    ),
    rule(
        Name("gemini.md"),
        AnyDepth,
        "instructions Gemini CLI reads and follows",
    ),
    rule(
        Name("qwen.md"),
        AnyDepth,
        "instructions Qwen Code reads and follows",
    ),
    rule(
        In(".github", &["copilot-instructions.md"]),
        Root,
        "instructions GitHub Copilot reads and follows",
    ),
    rule(
        Under(".github", "instructions"),
        Root,
        "instructions GitHub Copilot reads and follows",
    ),
    rule(
        Name(".cursorrules"),
        AnyDepth,
        "instructions Cursor reads and follows",
    ),
    rule(
        Name(".windsurfrules"),
        AnyDepth,
        "instructions Windsurf reads and follows",
    ),
    rule(
        Dir(".clinerules"),
        AnyDepth,
        "instructions Cline reads and follows",
    ),
    rule(
        Name(".goosehints"),
        AnyDepth,
        "instructions goose reads and follows",
    ),
];

/// Dot-files and directories at the workspace root that are ordinary: ignore lists, formatter
/// and linter settings, caches and build output of common tools. Any other new top-level
/// dot-name is noted by `diff` ([`note_reason`]): tools keep their project settings in such
/// names, and a tool airlock's table does not know yet may run what they say. Matched on the
/// [`normalise`]d name; an entry ending in `*` is a prefix.
const ORDINARY_DOT_NAMES: &[&str] = &[
    ".gitignore",
    ".gitkeep",
    ".mailmap",
    ".git-blame-ignore-revs",
    ".github",
    ".gitlab",
    ".editorconfig",
    ".dockerignore",
    ".npmignore",
    ".prettierignore",
    ".eslintignore",
    ".vercelignore",
    ".prettierrc*",
    ".eslintrc*",
    ".stylelintrc*",
    ".markdownlint*",
    ".yamllint*",
    ".clang-format",
    ".clang-tidy",
    ".rustfmt.toml",
    ".taplo.toml",
    ".flake8",
    ".pylintrc",
    ".isort.cfg",
    ".coveragerc",
    ".codespellrc",
    ".browserslistrc",
    ".babelrc*",
    ".swcrc",
    ".nvmrc",
    ".node-version",
    ".python-version",
    ".ruby-version",
    ".java-version",
    ".go-version",
    ".terraform-version",
    ".env.example",
    ".env.sample",
    ".env.template",
    ".changeset",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    ".tox",
    ".nox",
    ".coverage",
    ".nyc_output",
    ".cache",
    ".next",
    ".nuxt",
    ".svelte-kit",
    ".turbo",
    ".parcel-cache",
    ".angular",
    ".gradle",
    ".dart_tool",
    ".sass-cache",
    ".eggs",
    ".ipynb_checkpoints",
    ".docusaurus",
    ".vitepress",
    ".astro",
    ".expo",
    ".serverless",
    ".terraform",
    ".terraform.lock.hcl",
    ".bundle",
    ".stack-work",
    ".cpcache",
    ".lsp",
    ".clj-kondo",
    ".metals",
    ".bsp",
    ".bloop",
    ".ccls-cache",
    ".clangd",
    ".pnpm-store",
    ".DS_Store",
    ".venv",
    ".cargo",
    ".yarn",
    ".config",
];

/// A note `diff` shows on a change without `merge` refusing it: instructions for the next
/// coding agent ([`AGENT_INSTRUCTIONS`]), or a dot-file or directory at the workspace root that
/// is neither in [`EXEC_RULES`] nor ordinary (`ORDINARY_DOT_NAMES`).
pub fn note_reason(path: &Path) -> Option<&'static str> {
    let c = comps(path);
    if let Some(r) = AGENT_INSTRUCTIONS.iter().find(|r| matches(r, &c)) {
        return Some(r.why);
    }
    let first = c.first()?;
    if is_dotgit(first) {
        return None;
    }
    let ordinary = ORDINARY_DOT_NAMES.iter().any(|o| {
        let o = o.to_lowercase();
        match o.strip_suffix('*') {
            Some(prefix) => first.starts_with(prefix),
            None => *first == o,
        }
    });
    (first.starts_with('.') && !ordinary && exec_reason(path).is_none()).then_some(
        "a dot-file or directory at the workspace root that airlock does not know: find which \
         tool reads it before you open the workspace in that tool",
    )
}

/// Code points HFS+ ignores when comparing names (git's `is_hfs_dotgit`, utf8.c
/// `next_hfs_char`): zero-width joiners and direction marks, BOM.
fn hfs_ignorable(c: char) -> bool {
    matches!(c, '\u{200c}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{206a}'..='\u{206f}' | '\u{feff}')
}

/// A name as the host may see it: HFS+-ignorable code points removed, lower case, and the
/// trailing dots and spaces NTFS drops removed (git's `is_ntfs_dot_generic`); an NTFS alternate
/// data stream suffix (`:stream`) is dropped as well.
pub fn normalise(name: &str) -> String {
    let s: String = name
        .chars()
        .filter(|c| !hfs_ignorable(*c))
        .collect::<String>()
        .to_lowercase();
    let s = s.split(':').next().unwrap_or("").to_string();
    s.trim_end_matches([' ', '.']).to_string()
}

/// Whether `name` is `.git` to some file system git runs on: `.git`, `.GIT`, `.git.`, `.git `,
/// `.git::$INDEX_ALLOCATION`, the 8.3 short name `git~1`, or `.git` with HFS+-ignorable code
/// points (git's `is_ntfs_dotgit`, `is_hfs_dotgit`).
pub fn is_dotgit(name: &str) -> bool {
    let n = normalise(name);
    n == ".git" || n == "git~1"
}

/// The 8.3 short names NTFS may give `.gitmodules` and `.gitattributes` (git's
/// `is_ntfs_dotgitmodules`: `gitmod~N`, and the hashed `gi7eba~N`; likewise `gitatt~N`,
/// `gi7d29~N`).
fn short_name_of(n: &str) -> Option<&'static str> {
    let (stem, num) = n.split_once('~')?;
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match stem {
        "gitmod" | "gi7eba" => Some(".gitmodules"),
        "gitatt" | "gi7d29" => Some(".gitattributes"),
        _ => None,
    }
}

fn comps(path: &Path) -> Vec<String> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => {
                let n = normalise(&n.to_string_lossy());
                Some(short_name_of(&n).map(str::to_string).unwrap_or(n))
            }
            _ => None,
        })
        .collect()
}

/// Paths of the workspace's own `.git` directory that run programs (gitrepository-layout(5));
/// the rest (objects, refs, index, logs) is repository data, fetched as commits, not merged.
///
/// Under `info/`, `refs` (the ref list `git update-server-info` writes for dumb transports, which
/// `git gc` refreshes) and `exclude` (ignore patterns) are data: repository internals, never
/// merged. The rest of `info/` (`attributes`, which picks filter and diff drivers, and anything
/// unknown) counts as configuration.
fn root_git_reason(rest: &[String]) -> Option<&'static str> {
    let second = rest.get(1).map(String::as_str);
    match rest.first().map(String::as_str) {
        Some("hooks") => Some("git hooks run on the host at the next git command"),
        Some("info") if rest.len() == 2 && matches!(second, Some("refs" | "exclude")) => None,
        Some("config" | "config.worktree" | "info" | "commondir") => Some(
            "git configuration can run programs (core.fsmonitor, core.pager, aliases, filters)",
        ),
        Some("modules" | "worktrees") => {
            Some("a submodule's or worktree's git directory: its hooks and config run on the host")
        }
        _ => None,
    }
}

fn matches(rule: &ExecRule, c: &[String]) -> bool {
    let n = c.len();
    let Some(last) = c.last() else {
        return false;
    };
    let at = |i: usize| rule.at == AnyDepth || i == 0;
    match rule.pat {
        Name(x) => last == x && at(n - 1),
        Suffix(s) => last.ends_with(s) && at(n - 1),
        Dir(d) => c.iter().enumerate().any(|(i, x)| x == d && at(i)),
        Under(a, b) => c
            .iter()
            .enumerate()
            .any(|(i, x)| x == a && at(i) && (i + 1 == n || c.get(i + 1).is_some_and(|y| y == b))),
        Below(a, b) => c
            .windows(2)
            .enumerate()
            .any(|(i, w)| w[0] == a && w[1] == b && at(i)),
        In(d, names) => {
            (last == d && at(n - 1))
                || (n >= 2
                    && c[n - 2] == d
                    && at(n - 2)
                    && (names.is_empty() || names.contains(&last.as_str())))
        }
    }
}

/// Why `path` (relative to the workspace) executes on the host, by its name alone (`None` if it
/// does not): a git directory or gitdir file at any depth (and its lookalikes), the workspace's
/// own `.git/hooks`, `.git/config`, ..., or an [`EXEC_RULES`] entry.
pub fn exec_reason(path: &Path) -> Option<&'static str> {
    let c = comps(path);
    let raw_first = path.components().next();
    for (i, x) in c.iter().enumerate() {
        if is_dotgit(x) {
            let own = i == 0
                && c.len() > 1
                && matches!(raw_first, Some(Component::Normal(n)) if n == ".git");
            if own {
                return root_git_reason(&c[1..]);
            }
            return Some(
                "a git directory or gitdir file: git runs its hooks and config at the next git \
                 command in that directory",
            );
        }
    }
    EXEC_RULES.iter().find(|r| matches(r, &c)).map(|r| r.why)
}

/// Repository internals of the workspace's own `.git` (objects, refs, index, logs): not merged
/// as files; new commits are fetched into a branch instead. Exactly the first component `.git`.
pub fn is_git_internal(path: &Path) -> bool {
    matches!(path.components().next(), Some(Component::Normal(n)) if n == ".git")
        && path.components().count() > 1
        && exec_reason(path).is_none()
}

/// Names git reads in a git directory (gitrepository-layout(5)).
const GIT_LAYOUT: &[&str] = &[
    "head",
    "config",
    "config.worktree",
    "hooks",
    "info",
    "objects",
    "refs",
    "packed-refs",
    "commondir",
    "index",
    "logs",
    "modules",
    "worktrees",
    "branches",
    "remotes",
    "shallow",
    "description",
    "fetch_head",
    "orig_head",
];

/// Whether `path` lies in a directory laid out as a git directory (a file `HEAD`, directories
/// `objects` and `refs`: git's `is_git_directory`; `safe.bareRepository` defaults to `all`) and
/// is one of the names git reads there. `has(p, dir)` says whether `p` (relative to the
/// workspace) exists as a directory (`dir`) or a file in the result of the merge.
pub fn git_shaped(path: &Path, has: &dyn Fn(&Path, bool) -> bool) -> Option<PathBuf> {
    let mut dir = PathBuf::new();
    for comp in path.components() {
        let Component::Normal(n) = comp else {
            return None;
        };
        if GIT_LAYOUT.contains(&normalise(&n.to_string_lossy()).as_str())
            && has(&dir.join("HEAD"), false)
            && has(&dir.join("objects"), true)
            && has(&dir.join("refs"), true)
        {
            return Some(dir);
        }
        dir.push(n);
    }
    None
}

/// Whether a link at `link` (relative to the workspace) with target `target` points outside the
/// workspace `workspace`: an absolute target not below `workspace`, or a relative one that climbs
/// above the root. `..` is accepted only as leading components (after a name it would be resolved
/// through whatever that name is, maybe another link); `.` is ignored.
pub fn link_escapes(workspace: &Path, link: &Path, target: &Path) -> bool {
    if target.as_os_str().is_empty() {
        return true;
    }
    let rest = if target.is_absolute() {
        match target.strip_prefix(workspace) {
            Ok(r) => r.to_path_buf(),
            Err(_) => return true,
        }
    } else {
        target.to_path_buf()
    };
    let mut depth: i64 = if target.is_absolute() {
        0
    } else {
        i64::try_from(link.parent().map_or(0, |p| p.components().count())).unwrap_or(i64::MAX)
    };
    let mut seen_name = false;
    for c in rest.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if !seen_name => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            Component::Normal(_) => seen_name = true,
            _ => return true,
        }
    }
    false
}

/// How many links [`link_lands_in`] follows before it gives up (Linux's `MAXSYMLINKS`, 40).
const MAX_LINK_HOPS: usize = 40;

/// Where a workspace link leads, followed as the kernel would (component by component, each
/// link met on the way replaced by its target, `..` taken from the resolved directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEnd {
    /// A path inside the workspace (relative to its root; empty for the root itself).
    Inside(PathBuf),
    /// Above the root or absolute outside it ([`link_escapes`] reports those).
    Outside,
    /// More than `MAX_LINK_HOPS` links, or a loop.
    TooDeep,
}

/// Follows the link at `link` (relative to `workspace`) with target `target`; `link_of(p)` is
/// the target of `p` (relative to the workspace) when `p` is a link in the result of the merge.
pub fn link_lands_in(
    workspace: &Path,
    link: &Path,
    target: &Path,
    link_of: &dyn Fn(&Path) -> Option<PathBuf>,
) -> LinkEnd {
    use std::collections::VecDeque;
    use std::ffi::OsString;
    let mut done: Vec<OsString> = Vec::new();
    let mut todo: VecDeque<OsString> = VecDeque::new();
    // Queues `t` to be walked from the directory `done` (from the root when absolute).
    let queue = |t: &Path, done: &mut Vec<OsString>, todo: &mut VecDeque<OsString>| -> bool {
        let rest = if t.is_absolute() {
            let Ok(r) = t.strip_prefix(workspace) else {
                return false;
            };
            done.clear();
            r
        } else {
            t
        };
        for c in rest.components().rev() {
            match c {
                Component::Normal(n) => todo.push_front(n.to_os_string()),
                Component::ParentDir => todo.push_front("..".into()),
                Component::CurDir => {}
                Component::RootDir | Component::Prefix(_) => return false,
            }
        }
        true
    };
    for c in link.parent().unwrap_or(Path::new("")).components() {
        if let Component::Normal(n) = c {
            done.push(n.to_os_string());
        }
    }
    if target.as_os_str().is_empty() || !queue(target, &mut done, &mut todo) {
        return LinkEnd::Outside;
    }
    let mut hops = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            if done.pop().is_none() {
                return LinkEnd::Outside;
            }
            continue;
        }
        done.push(c);
        let here: PathBuf = done.iter().collect();
        if let Some(t) = link_of(&here) {
            hops += 1;
            if hops > MAX_LINK_HOPS {
                return LinkEnd::TooDeep;
            }
            done.pop();
            if t.as_os_str().is_empty() || !queue(&t, &mut done, &mut todo) {
                return LinkEnd::Outside;
            }
        }
    }
    LinkEnd::Inside(done.iter().collect())
}

/// Why a link inside the workspace executes on the host by where it leads (`None` when it
/// leads somewhere ordinary or outside, which [`link_escapes`] reports): into the repository's
/// `.git` or any git directory or lookalike ([`is_dotgit`] on any component), onto a path of
/// [`exec_reason`], or through too many links. What the user (an editor's save, a generator,
/// `cp x d/`) later writes through such a link lands in git's hooks or config, or another file
/// a host tool runs.
pub fn link_reason(
    workspace: &Path,
    link: &Path,
    target: &Path,
    link_of: &dyn Fn(&Path) -> Option<PathBuf>,
) -> Option<String> {
    match link_lands_in(workspace, link, target, link_of) {
        LinkEnd::Outside => None,
        LinkEnd::TooDeep => Some(format!(
            "a symbolic link to {} through more than {MAX_LINK_HOPS} links (or a loop): where \
             it leads cannot be checked",
            crate::quote::path(target)
        )),
        LinkEnd::Inside(p) => {
            let shown = if p.as_os_str().is_empty() {
                ".".to_string()
            } else {
                crate::quote::path(&p).to_string()
            };
            let into_git = p
                .components()
                .any(|c| matches!(c, Component::Normal(n) if is_dotgit(&n.to_string_lossy())));
            if into_git {
                Some(format!(
                    "a symbolic link into a git directory ({shown}): what is written through it \
                     lands in git's hooks and config, which run at the next git command"
                ))
            } else {
                exec_reason(&p).map(|why| {
                    format!("a symbolic link to {shown}, where files execute on the host ({why})")
                })
            }
        }
    }
}

/// The workspace repository's `core.hooksPath`, relative to the workspace, when it names a
/// directory inside it (husky sets `.husky/_`; a project may use `tools/hooks`): git runs every
/// hook there. Read from the real `.git/config` only (the user's file; in an overlay session the
/// agent's copy is in the upper layer) with `git config --file`, which runs nothing; cached per
/// workspace for the life of the process. git(1) `core.hooksPath`: a relative path is taken from
/// the root of the working tree.
pub fn hooks_dir(workspace: &Path) -> Option<PathBuf> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Option<PathBuf>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(v) = cache.lock().ok().and_then(|c| c.get(workspace).cloned()) {
        return v;
    }
    let found = read_hooks_dir(workspace);
    if let Ok(mut c) = cache.lock() {
        c.insert(workspace.to_path_buf(), found.clone());
    }
    found
}

fn read_hooks_dir(workspace: &Path) -> Option<PathBuf> {
    // Only a repository's own `.git` directory (not a gitdir file, not a link: a worktree's
    // `.git` is the agent's to write).
    let dot_git = workspace.join(".git");
    let config = dot_git.join("config");
    if !std::fs::symlink_metadata(&dot_git).is_ok_and(|m| m.is_dir())
        || !std::fs::symlink_metadata(&config).is_ok_and(|m| m.is_file())
    {
        return None;
    }
    let mut c = crate::hostgit::command();
    c.arg("config")
        .arg("--file")
        .arg(&config)
        .args(["--get", "core.hooksPath"]);
    let v = crate::hostgit::run(c, "read core.hooksPath").ok()?;
    let v = Path::new(v.trim_end_matches('\n'));
    let rel = if v.is_absolute() {
        v.strip_prefix(workspace).ok()?.to_path_buf()
    } else {
        v.to_path_buf()
    };
    let mut out = PathBuf::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return None, // climbs out: not the workspace's to check
        }
    }
    Some(out)
}

/// What the agent's version of a file is, when `diff` cannot show it in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unshown {
    /// `file`-style kind: "ELF executable or library", "script (#!/bin/sh)", "binary data",
    /// "text over 4 MiB", "non-UTF-8 data".
    pub kind: String,
    /// Its length in bytes.
    pub len: u64,
}

/// Classifies a file's content from its first bytes (`head`, at least the first
/// [`MAX_SHOWN_BYTES`] + 1 when the file is that long) and length: `Ok(text)` when `diff` shows
/// it in full, else what it is.
///
/// # Errors
/// [`Unshown`] for binary content (a NUL byte in the first 8 KiB), content over
/// [`MAX_SHOWN_BYTES`] or not UTF-8.
pub fn classify(head: &[u8], len: u64) -> Result<String, Unshown> {
    let first_line = || {
        let l = head.split(|b| *b == b'\n').next().unwrap_or_default();
        crate::quote::visible(&String::from_utf8_lossy(&l[..l.len().min(60)])).into_owned()
    };
    let kind = if head.starts_with(b"\x7fELF") {
        "ELF executable or library".to_string()
    } else if head.iter().take(8192).any(|b| *b == 0) {
        "binary data".to_string()
    } else if len > MAX_SHOWN_BYTES {
        if head.starts_with(b"#!") {
            format!("script ({}) over 4 MiB", first_line())
        } else {
            "text over 4 MiB".to_string()
        }
    } else {
        match String::from_utf8(head.to_vec()) {
            Ok(s) => return Ok(s),
            Err(_) => "non-UTF-8 data".to_string(),
        }
    };
    Err(Unshown { kind, len })
}

/// A reason `merge` refuses a change without the matching `--allow-…` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Concern {
    /// It executes on the host (the reason says how).
    Exec(String),
    /// A link whose target leaves the workspace.
    OutsideLink(PathBuf),
    /// `diff` cannot show it in full.
    Unshown(Unshown),
}

impl Concern {
    /// The `airlock merge` flag that lands it anyway.
    pub fn flag(&self) -> &'static str {
        match self {
            Concern::Exec(_) => "--allow-exec-files",
            Concern::OutsideLink(_) => "--allow-outside-links",
            Concern::Unshown(_) => "--allow-unshown-files",
        }
    }

    /// Whether `allow` lets it land.
    pub fn allowed(&self, allow: Allow) -> bool {
        match self {
            Concern::Exec(_) => allow.exec_files,
            Concern::OutsideLink(_) => allow.outside_links,
            Concern::Unshown(_) => allow.unshown_files,
        }
    }
}

impl std::fmt::Display for Concern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Concern::Exec(why) => write!(f, "executes on the host: {why}"),
            Concern::OutsideLink(t) => write!(
                f,
                "a symbolic link to {}, outside the workspace",
                crate::quote::path(t)
            ),
            Concern::Unshown(u) => write!(
                f,
                "not shown by diff: {}, {}",
                u.kind,
                crate::merge::human_size(u.len)
            ),
        }
    }
}

/// Which concerns the user lets `merge` land (`--allow-exec-files`, `--allow-outside-links`,
/// `--allow-unshown-files`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allow {
    pub exec_files: bool,
    pub outside_links: bool,
    pub unshown_files: bool,
}

impl Allow {
    /// Nothing allowed: the default of `airlock merge`.
    pub fn none() -> Allow {
        Allow::default()
    }

    /// Everything allowed.
    pub fn all() -> Allow {
        Allow {
            exec_files: true,
            outside_links: true,
            unshown_files: true,
        }
    }
}

/// What one changed path is in the agent's version, as far as the rules need it.
#[derive(Debug, Clone)]
pub enum Version {
    /// Deleted (only the name is checked).
    Deleted,
    /// A directory.
    Dir,
    /// A symbolic link with this target.
    Link(PathBuf),
    /// A regular file: its text, or what it is when not shown.
    File(Result<String, Unshown>),
    /// Something else (a submodule commit, a special file): only the name is checked.
    Other,
}

/// The concerns of one change: its name ([`exec_reason`], [`git_shaped`] with `has`), a link's
/// target ([`link_escapes`], [`link_reason`]), a file's content. The same function for the
/// upper layer and for commits. Links met on the way are the host workspace's
/// ([`host_link_of`]); [`concerns_in`] takes the merge result's instead.
pub fn concerns(
    workspace: &Path,
    path: &Path,
    version: &Version,
    has: &dyn Fn(&Path, bool) -> bool,
) -> Vec<Concern> {
    concerns_in(workspace, path, version, has, &|p| {
        host_link_of(workspace, p)
    })
}

/// The target of `p` (relative to `workspace`) when it is a link in the host's workspace.
pub fn host_link_of(workspace: &Path, p: &Path) -> Option<PathBuf> {
    let full = workspace.join(p);
    std::fs::symlink_metadata(&full)
        .ok()
        .filter(|m| m.file_type().is_symlink())
        .and_then(|_| std::fs::read_link(&full).ok())
}

/// [`concerns`], with `link_of(p)`: the target of `p` when it is a link in the result of the
/// merge (a chain of links is followed through it).
pub fn concerns_in(
    workspace: &Path,
    path: &Path,
    version: &Version,
    has: &dyn Fn(&Path, bool) -> bool,
    link_of: &dyn Fn(&Path) -> Option<PathBuf>,
) -> Vec<Concern> {
    let mut out = Vec::new();
    if let Some(why) = exec_reason(path) {
        out.push(Concern::Exec(why.to_string()));
    } else if let Some(d) = hooks_dir(workspace).filter(|d| path.starts_with(d)) {
        out.push(Concern::Exec(format!(
            "the repository's core.hooksPath is {}: git runs the hooks there at the next git \
             command",
            crate::quote::path(&d)
        )));
    } else if let Some(d) = git_shaped(path, has) {
        let d = if d.as_os_str().is_empty() {
            ".".to_string()
        } else {
            crate::quote::path(&d).to_string()
        };
        out.push(Concern::Exec(format!(
            "{d} is laid out as a git directory (HEAD, objects/, refs/): git runs its hooks and \
             config there"
        )));
    }
    match version {
        Version::Link(t) => {
            // Both may hold (`sub/../.git`: `..` after a name counts as leaving): each flag.
            if link_escapes(workspace, path, t) {
                out.push(Concern::OutsideLink(t.clone()));
            }
            let exec = out.iter().any(|k| matches!(k, Concern::Exec(_)));
            if let Some(why) = link_reason(workspace, path, t, link_of).filter(|_| !exec) {
                out.push(Concern::Exec(why));
            }
        }
        Version::File(Err(u)) => out.push(Concern::Unshown(u.clone())),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(p: &str) -> bool {
        exec_reason(Path::new(p)).is_some()
    }

    /// D1: a git directory at any depth, under every name git treats as `.git`.
    #[test]
    fn nested_git_directories_and_lookalikes_execute() {
        for p in [
            "sub/.git/config",
            "sub/.git/hooks/post-checkout",
            "a/b/c/.git/HEAD",
            "sub/.git",
            "sub/.GIT/config",
            "sub/.Git/hooks/x",
            "sub/.git./config",
            "sub/.git /config",
            "sub/.git. . /config",
            "sub/git~1/config",
            "sub/GIT~1/config",
            "sub/.git::$INDEX_ALLOCATION/config",
            "sub/.g\u{200c}it/config",
            "sub/\u{feff}.git/config",
            "sub/.gi\u{200d}t",
            ".GIT/config",
            ".git./hooks/x",
            ".git",
            ".git/hooks/pre-commit",
            ".git/config",
            ".git/info/attributes",
            ".git/info/refs/x",
            ".git/info/sparse-checkout",
            ".git/info",
            ".git/modules/m/config",
            ".git/worktrees/w/config.worktree",
        ] {
            assert!(exec(p), "{p}");
        }
        for p in [
            ".git/objects/ab/cd",
            ".git/refs/heads/main",
            ".git/index",
            ".git/HEAD",
            ".git/info/refs",
            ".git/info/exclude",
        ] {
            assert!(!exec(p), "{p}");
            assert!(is_git_internal(Path::new(p)), "{p}");
        }
        for p in [
            ".GIT/objects/x",
            "sub/.git/objects/x",
            ".git",
            "src/git.rs",
            "x.git/y",
        ] {
            assert!(!is_git_internal(Path::new(p)), "{p}");
        }
        assert!(!exec("x.git/config") && !exec("src/.gitignore") && !exec("gitx/config"));
    }

    /// D2/D5: the table, at any depth where the tool reads it at any depth.
    #[test]
    fn host_auto_run_files_execute_at_their_depths() {
        for p in [
            ".cargo/config.toml",
            ".cargo/config",
            "crates/x/.cargo/config.toml",
            "rust-toolchain.toml",
            "sub/rust-toolchain",
            ".husky/pre-commit",
            ".husky/_/husky.sh",
            ".githooks/pre-push",
            ".pre-commit-config.yaml",
            ".npmrc",
            "web/.npmrc",
            ".yarnrc",
            ".yarnrc.yml",
            ".yarn/releases/yarn-4.cjs",
            ".pnpmfile.cjs",
            ".mise.toml",
            "mise.toml",
            ".tool-versions",
            ".config/mise/config.toml",
            "proj.code-workspace",
            ".vscode/settings.json",
            ".vscode/tasks.json",
            ".vscode/mcp.json",
            "pkg/.vscode/launch.json",
            ".idea/runConfigurations/x.xml",
            "d/.gitattributes",
            "d/e/.gitmodules",
            "d/.GitAttributes",
            "d/gitatt~1",
            "gitmod~2",
            ".envrc",
            "sub/.envrc",
            ".env",
            ".devcontainer/devcontainer.json",
            ".devcontainer.json",
            ".nvim.lua",
            ".exrc",
            ".claude/settings.json",
            ".claude/settings.local.json",
            ".mcp.json",
            ".github/workflows/x.yml",
            ".github/workflows",
            ".gitlab-ci.yml",
            ".venv/lib/python3.12/site-packages/zz.pth",
            "env/lib/site-packages/x.pth",
            ".venv/bin/activate",
            "myenv/bin/activate.fish",
            "myenv/Scripts/Activate.ps1",
            ".venv/bin/python",
            ".venv/pyvenv.cfg",
            "pkg/__pycache__/mod.cpython-312.pyc",
            "lib/sitecustomize.py",
            "node_modules/.bin/eslint",
            "web/node_modules/.bin/tsc",
            ".bashrc",
        ] {
            assert!(exec(p), "{p}");
        }
        for p in [
            "Makefile",
            "package.json",
            "src/main.rs",
            "docs/github/workflows.md",
            "vendor/x/.github/workflows/ci.yml",
            "node_modules/lodash/index.js",
            ".cargo/registry.txt",
            "bin/tool",
            "README.md",
            "src/env.rs",
            "x.pth.txt",
        ] {
            assert!(!exec(p), "{p}");
        }
    }

    /// Y4: other agents' and editors' project files that start a program, an MCP or language
    /// server, or send data to a URL the file names, at the root and two directories down.
    #[test]
    fn other_tools_project_files_execute_at_any_depth() {
        let names = [
            "opencode.json",
            "opencode.jsonc",
            ".opencode/opencode.json",
            ".opencode/plugin/x.js",
            ".amazonq/mcp.json",
            ".amazonq/cli-agents/a.json",
            ".kiro/settings/mcp.json",
            ".kiro/hooks/h.kiro.hook",
            ".roo/mcp.json",
            ".kilocode/mcp.json",
            ".clinerules/hooks/PreToolUse",
            ".cline/hooks/TaskStart",
            ".continue/config.yaml",
            ".continue/mcpServers/x.yaml",
            ".codex/config.toml",
            ".windsurf/hooks.json",
            "crush.json",
            ".crush.json",
            ".qwen/settings.json",
            ".junie/mcp/mcp.json",
            ".aider.conf.yml",
            ".zed/settings.json",
            ".zed/tasks.json",
            ".helix/languages.toml",
            ".theia/tasks.json",
            ".fleet/run.json",
            ".vimrc",
            "_vimrc",
            ".exrc",
            "_exrc",
            ".gvimrc",
            ".dir-locals.el",
            ".lfsconfig",
            "gradle/wrapper/gradle-wrapper.properties",
            "gradle/wrapper/gradle-wrapper.jar",
            ".mvn/extensions.xml",
            ".mvn/wrapper/maven-wrapper.properties",
            ".sbtopts",
            ".jvmopts",
            ".bazelrc",
            ".bazelversion",
            ".bazeliskrc",
            "bunfig.toml",
            ".irbrc",
            ".pryrc",
            ".ghci",
            ".pdbrc",
            ".OpenCode/opencode.json",
            "OPENCODE.JSON",
        ];
        for n in names {
            assert!(exec(n), "{n}");
            let deep = format!("a/b/{n}");
            assert!(exec(&deep), "{deep}");
        }
        for p in [
            "gradle",
            "src/gradle",
            "gradle/libs.versions.toml",
            ".clinerules",
            ".clinerules/style.md",
            "docs/opencode.md",
            "vimrc.txt",
            "AGENTS.md",
            "CLAUDE.md",
            ".github/copilot-instructions.md",
        ] {
            assert!(!exec(p), "{p}");
        }
    }

    /// Instructions for the next agent and unknown top-level dot-names are noted, not refused;
    /// ordinary dot-names, the table's own entries and `.git` are not noted.
    #[test]
    fn instructions_and_unknown_dot_names_are_noted() {
        let note = |p: &str| note_reason(Path::new(p));
        for p in [
            "AGENTS.md",
            "sub/dir/AGENTS.md",
            "CLAUDE.md",
            "a/b/CLAUDE.md",
            "GEMINI.md",
            "a/b/GEMINI.md",
            ".github/copilot-instructions.md",
            ".github/instructions/x.instructions.md",
            ".cursorrules",
            "a/b/.cursorrules",
            ".clinerules",
            ".windsurfrules",
            ".newagent/config.json",
            ".newagentrc",
        ] {
            assert!(note(p).is_some(), "{p}");
            assert!(!exec(p), "{p}: a note, not a refusal");
        }
        for p in [
            ".gitignore",
            ".editorconfig",
            ".prettierrc.json",
            ".eslintrc.cjs",
            ".github/workflows/x.yml",
            ".github/dependabot.yml",
            ".pytest_cache/v/cache/x",
            ".envrc",
            ".vscode/tasks.json",
            ".git/refs/heads/main",
            "src/.hidden",
            "README.md",
            "docs/github/copilot-instructions.md",
        ] {
            assert!(note(p).is_none(), "{p}");
        }
    }

    /// Y5: a link that leads into a git directory (the repository's own or a nested one, under
    /// any name git treats as `.git`), or onto an exec file, directly or through another link.
    #[test]
    fn links_into_git_directories_execute() {
        let ws = Path::new("/home/u/ws");
        let links = [("b", ".git"), ("c/l", "../b/hooks"), ("up", "..")];
        let link_of = |p: &Path| {
            links
                .iter()
                .find(|(l, _)| Path::new(l) == p)
                .map(|(_, t)| PathBuf::from(t))
        };
        let why = |l: &str, t: &str| link_reason(ws, Path::new(l), Path::new(t), &link_of);
        for (l, t) in [
            ("d", ".git"),
            ("d", ".git/hooks"),
            ("d", "./.git/config"),
            ("d", "sub/../.git"),
            ("d", ".GIT/hooks"),
            ("d", "git~1/hooks"),
            ("d", ".git./hooks"),
            ("x/y/d", "../../.git/hooks"),
            ("d", "/home/u/ws/.git/hooks"),
            ("d", "sub/.git"),
            ("d", ".git/objects"),
            ("a", "b"),
            ("a", "b/hooks/pre-commit"),
            ("a", "c/l"),
            ("x/a", "../c/l/post-commit"),
            ("d", ".vscode"),
            ("d", ".envrc"),
            ("d", "c/../.husky"),
        ] {
            assert!(why(l, t).is_some(), "{l} -> {t}");
        }
        for (l, t) in [
            ("d", "src"),
            ("d", "x.git/hooks"),
            ("d", ".gitignore"),
            ("AGENTS.md", "CLAUDE.md"),
            ("d", "."),
            ("d", "../outside"),
            ("d", "/etc/passwd"),
            ("d", "up/other"),
        ] {
            assert!(why(l, t).is_none(), "{l} -> {t}");
        }
        // A loop is refused rather than followed forever.
        let loop_of = |p: &Path| {
            (p == Path::new("p") || p == Path::new("q"))
                .then(|| PathBuf::from(if p == Path::new("p") { "q" } else { "p" }))
        };
        assert_eq!(
            link_lands_in(ws, Path::new("r"), Path::new("p"), &loop_of),
            LinkEnd::TooDeep
        );
        assert!(link_reason(ws, Path::new("r"), Path::new("p/x"), &loop_of).is_some());
        // Through `concerns`: an exec concern (merge refuses it without --allow-exec-files).
        let none = |_: &Path, _: bool| false;
        let k = concerns_in(
            ws,
            Path::new("d"),
            &Version::Link(".git/hooks".into()),
            &none,
            &link_of,
        );
        assert!(
            matches!(k.as_slice(), [Concern::Exec(w)] if w.contains("git directory")),
            "{k:?}"
        );
    }

    /// The repository's own hooks directory, wherever `core.hooksPath` puts it in the workspace
    /// (relative, `./`-prefixed or absolute); one outside the workspace is not the workspace's.
    #[test]
    fn the_repositorys_hooks_path_is_an_exec_directory() {
        let git = |ws: &Path, args: &[&std::ffi::OsStr]| {
            let o = std::process::Command::new("git")
                .arg("--git-dir")
                .arg(ws.join(".git"))
                .args(args)
                .output()
                .expect("git");
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        };
        let init = |ws: &Path| {
            let o = std::process::Command::new("git")
                .args(["init", "-q"])
                .arg(ws)
                .output()
                .expect("git");
            assert!(o.status.success());
        };
        for (value, flagged) in [
            ("tools/hooks", "tools/hooks/pre-commit"),
            ("./scripts/git-hooks", "scripts/git-hooks/post-checkout"),
        ] {
            let t = tempfile::tempdir().expect("tempdir");
            let ws = t.path();
            init(ws);
            git(
                ws,
                &["config".as_ref(), "core.hooksPath".as_ref(), value.as_ref()],
            );
            let none = |_: &Path, _: bool| false;
            let v = Version::File(Ok("x".into()));
            let k = concerns(ws, Path::new(flagged), &v, &none);
            assert!(
                matches!(k.as_slice(), [Concern::Exec(w)] if w.contains("core.hooksPath")),
                "{value}: {k:?}"
            );
            assert!(
                concerns(ws, Path::new("tools/other"), &v, &none).is_empty(),
                "{value}"
            );
        }
        let t = tempfile::tempdir().expect("tempdir");
        init(t.path());
        let abs = t.path().join("hooks");
        git(
            t.path(),
            &[
                "config".as_ref(),
                "core.hooksPath".as_ref(),
                abs.as_os_str(),
            ],
        );
        assert_eq!(hooks_dir(t.path()), Some(PathBuf::from("hooks")));
        let out = tempfile::tempdir().expect("tempdir");
        init(out.path());
        git(
            out.path(),
            &[
                "config".as_ref(),
                "core.hooksPath".as_ref(),
                "../elsewhere".as_ref(),
            ],
        );
        assert_eq!(hooks_dir(out.path()), None);
        assert_eq!(hooks_dir(Path::new("/nonexistent-airlock-ws")), None);
    }

    #[test]
    fn git_shaped_directories_are_found_in_the_result() {
        let files = [
            "x/HEAD",
            "x/config",
            "x/objects/ab",
            "x/refs/heads/m",
            "y/HEAD",
            "y/refs/z",
        ];
        let has = |p: &Path, dir: bool| {
            files.iter().any(|f| {
                let f = Path::new(f);
                if dir {
                    f.starts_with(p) && f != p
                } else {
                    f == p
                }
            })
        };
        assert_eq!(
            git_shaped(Path::new("x/config"), &has),
            Some(PathBuf::from("x"))
        );
        assert_eq!(
            git_shaped(Path::new("x/hooks/post-checkout"), &has),
            Some(PathBuf::from("x"))
        );
        assert_eq!(git_shaped(Path::new("x/README"), &has), None);
        assert_eq!(
            git_shaped(Path::new("y/HEAD"), &has),
            None,
            "no objects/: not a git dir"
        );
    }

    #[test]
    fn links_leaving_the_workspace_are_found() {
        let ws = Path::new("/home/u/ws");
        let esc = |l: &str, t: &str| link_escapes(ws, Path::new(l), Path::new(t));
        for (l, t) in [
            ("notes.md", "/home/u/.bashrc"),
            ("sshdir", "../../../../home/u/.ssh"),
            ("a", ".."),
            ("d/a", "../.."),
            ("d/a", "x/../../.."),
            ("d/l2", "l/../.."),
            ("a", "/home/u/ws/../x"),
            ("a", "/home/u/wsx/y"),
            ("a", ""),
        ] {
            assert!(esc(l, t), "{l} -> {t}");
        }
        for (l, t) in [
            ("src", "hello.txt"),
            ("d/a", "../b"),
            ("d/e/a", "../../b/c"),
            ("a", "./b"),
            ("a", "/home/u/ws/b"),
            ("a", "."),
        ] {
            assert!(!esc(l, t), "{l} -> {t}");
        }
    }

    #[test]
    fn content_is_classified_like_diff_shows_it() {
        assert_eq!(classify(b"hello\n", 6), Ok("hello\n".to_string()));
        let k = |b: &[u8], len: u64| classify(b, len).expect_err("unshown").kind;
        assert!(k(b"\x7fELF\x02\x01", 9000).contains("ELF"));
        assert_eq!(k(b"ab\0cd", 5), "binary data");
        assert!(k(b"all:\n", MAX_SHOWN_BYTES + 1).contains("over 4 MiB"));
        assert!(k(b"#!/bin/sh\necho", MAX_SHOWN_BYTES + 1).contains("script"));
        assert_eq!(k(b"\xff\xfe", 2), "non-UTF-8 data");
    }
}
