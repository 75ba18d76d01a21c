const ws = new WebSocket('ws://localhost:3000');

ws.onopen = () => {
  console.log('Connected');

  // Subscribe to a job
  ws.send(JSON.stringify({
    type: 'subscribe',
    jobId: 'job-abc123'
  }));
};

ws.onmessage = (event) => {
  const message = JSON.parse(event.data);

  switch (message.type) {
    case 'started':
      console.log('Job started:', message.config);
      break;

    case 'iteration':
      console.log(`Iteration ${message.iteration}/${message.totalIterations}`);
      break;

    case 'candidate':
      console.log(`Candidate ${message.candidateId}: score ${message.score.totalScore}`);
      break;

    case 'complete':
      console.log('Best result:', message.result.bestCandidate);
      ws.close();
      break;

    case 'error':
      console.error('Error:', message.error.message);
      ws.close();
      break;
  }
};

ws.onclose = () => {
  console.log('Disconnected');
};
