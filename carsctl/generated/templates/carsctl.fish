#% Template of the fish completion script (fish 3.1+). carsctl/generated/completion_scripts.py fills
#% it in; `carsctl completion generate` writes it to completions/carsctl.fish (`fish -n` checks it in the tests).
#% A line `# @NAME@` is a slot, replaced by its text: HEADER (header.txt), TABLES (tables.sh) and
#% CMD_CASES, OPT_CASES, ARG_CASES (the command tree as case tables). `#%` lines, like these, are dropped.
# @HEADER@

# __carsctl_cmd PATH: the subcommands and options (name<TAB>description) of a command path.
function __carsctl_cmd
    set -g __carsctl_subs
    set -g __carsctl_opts
    switch $argv[1]
        # @CMD_CASES@
    end
end

# __carsctl_optval PATH OPTION: status 0 and the value spec in __carsctl_val (kind, words...) and the
# number of values in __carsctl_nargs when the option takes a value; status 1 otherwise.
function __carsctl_optval
    switch "$argv[1]|$argv[2]"
        # @OPT_CASES@
        case '*'
            return 1
    end
end

# __carsctl_argval PATH N: status 0 and the value spec in __carsctl_val when the command takes an
# N-th positional argument.
function __carsctl_argval
    switch "$argv[1]|$argv[2]"
        # @ARG_CASES@
        case '*'
            return 1
    end
end

# The state directory: $CARSCTL_HOME, else a CARSCTL_HOME= line of ./.env, else ./.carsctl.
function __carsctl_home
    set -l home
    if set -q CARSCTL_HOME[1]
        set home $CARSCTL_HOME[1]
    end
    if test -z "$home"; and test -f .env -a -r .env
        while read -l line
            set line (string replace -r '^\s*(export\s+)?' '' -- $line)
            if string match -qr '^CARSCTL_HOME\s*=' -- $line
                set line (string replace -r '^CARSCTL_HOME\s*=\s*' '' -- $line | string trim)
                if string match -qr '^(["\']).*\1$' -- $line
                    set home (string sub -s 2 -e -1 -- $line)
                else
                    set home (string replace -r '\s+#.*$' '' -- $line)
                end
            end
        end < .env
    end
    test -n "$home"; or set home .carsctl
    string replace -r '^~/' "$HOME/" -- $home
end

# Task aliases and names from the cache; when it is missing, `carsctl completion refresh --quiet`
# writes it (once per shell and state directory; it imports no Celery and touches no network).
function __carsctl_tasks
    set -l file $argv[1]/completion/tasks
    if not test -f $file; and test "$__carsctl_refreshed" != $argv[1]
        set -g __carsctl_refreshed $argv[1]
        if command -q carsctl
            CARSCTL_HOME=$argv[1] command carsctl completion refresh --quiet </dev/null >/dev/null 2>&1
        end
    end
    test -f $file -a -r $file; or return 0
    while read -l line
        test -n "$line"; and echo $line
    end < $file
end

# Worker node names: the names of $CARSCTL_HOME/nodes/<name>.json whose "kind" is worker (the default);
# beat and the monitor have state files there too.
function __carsctl_nodes
    for file in $argv[1]/nodes/*.json
        test -f $file -a -r $file; or continue
        set -l kind worker
        while read -l line
            if string match -q -- '*"kind"*' $line
                set kind (string replace -r '^.*"kind"\s*:\s*"([^"]*)".*$' '$1' -- $line)
                break
            end
        end < $file
        test "$kind" = worker; and string replace -r '^.*/(.*)\.json$' '$1' -- $file
    end
end

# __carsctl_values CURRENT [PREFIX]: print the candidates of the value spec in __carsctl_val.
function __carsctl_values
    set -l cands $__carsctl_val[2..-1]
    set -l pre ''
    set -q argv[2]; and set pre $argv[2]
    switch $__carsctl_val[1]
        case f
            for word in (__fish_complete_path $argv[1])
                echo $pre$word
            end
            return
        case d
            for word in (__fish_complete_directories $argv[1] '')
                echo $pre$word
            end
            return
        case t
            set -a cands (__carsctl_tasks (__carsctl_home))
        case n
            set -a cands (__carsctl_nodes (__carsctl_home))
        case -
            return
    end
    for word in $cands
        echo $pre$word
    end
end

function __carsctl_complete --description 'Completion candidates for carsctl'
    set -l tokens (commandline -opc)
    set -l cur (commandline -ct)
    set -l cmdpath ''
    set -l n 0
    set -l skip 0
    set -l ddash 0
    set -g __carsctl_val
    set -g __carsctl_nargs 0
    __carsctl_cmd ''
    for word in $tokens[2..-1]
        if test $skip -gt 0
            set skip (math $skip - 1)
            continue
        end
        if test $ddash = 1
            set n (math $n + 1)
            continue
        end
        switch $word
            case --
                set ddash 1
            case -
                set n (math $n + 1)
            case '-*=*'
            case '-*'
                if __carsctl_optval $cmdpath $word
                    set skip $__carsctl_nargs
                end
            case '*'
                if contains -- $word (string replace -r '\t.*$' '' -- $__carsctl_subs)
                    if test -n "$cmdpath"
                        set cmdpath "$cmdpath $word"
                    else
                        set cmdpath $word
                    end
                    __carsctl_cmd $cmdpath
                    set n 0
                else
                    set n (math $n + 1)
                end
        end
    end
    if test $skip -gt 0
        __carsctl_values $cur
    else if string match -q -- '-*' $cur; and test $ddash = 0
        if string match -q -- '--*=*' $cur; and __carsctl_optval $cmdpath (string replace -r '=.*$' '' -- $cur)
            __carsctl_values (string replace -r '^[^=]*=' '' -- $cur) (string replace -r '=.*$' '=' -- $cur)
        else
            printf '%s\n' $__carsctl_opts
        end
    else if set -q __carsctl_subs[1]
        printf '%s\n' $__carsctl_subs
    else if __carsctl_argval $cmdpath (math $n + 1)
        __carsctl_values $cur
    else if test $ddash = 0
        printf '%s\n' $__carsctl_opts
    end
end

complete -c carsctl -e
complete -c carsctl -f -a '(__carsctl_complete)'
